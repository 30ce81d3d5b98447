"""Scripts run by the official SDKs' own interpreters (never imported by pytest)."""
