"""OAuth2 client credentials, JWT access tokens, scopes and the callers they make.

- Clients (taskstatus.credentials) have an id, a hashed secret, scopes and an owner.
- ``POST /oauth/token`` (form fields or HTTP Basic client authentication, RFC 6749 4.4) issues
  an HS256 JWT with an expiry and the granted scopes. The signing key is shared through the
  store (first node to start creates it), so every API node accepts every node's tokens.
- Scopes: ``tasks:read``, ``tasks:write`` (patch, cancel, submit) and ``tasks:admin`` (every
  task, every client; implies the other two). Without admin a caller sees and changes only the
  tasks its owner launched.
- A revoked client's tokens stop working within `CLIENT_CACHE_SECONDS` on every node.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Iterable

import jwt

from taskstatus.api.errors import Unauthorized
from taskstatus.caller import Caller
from taskstatus.credentials import ApiClient, Clients, check_secret
from taskstatus.limits import MAX_TEXT_LENGTH

__all__ = ["Auth", "basic_credentials"]

ISSUER = AUDIENCE = "taskstatus"
KEY_SETTING = "jwt.hs256.key"
CLIENT_CACHE_SECONDS = 10.0
_TOKEN_CACHE_SIZE = 10_000


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(id, secret) from an ``Authorization: Basic ...`` value, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


class Auth:
    """Issues and checks tokens for one store's clients; what they stand for is a `Caller`
    (without a retention cutoff: the request adds it)."""

    def __init__(self, clients: Clients, key: str, *, token_ttl: float = 3600.0) -> None:
        self.clients = clients
        self._key = key
        self.token_ttl = token_ttl
        self._tokens: dict[str, tuple[Caller, float]] = {}
        self._clients: dict[str, tuple[ApiClient | None, float]] = {}

    @classmethod
    async def create(cls, clients: Clients, key: str | None, *, token_ttl: float) -> Auth:
        """With no configured key, use (or create) the cluster's key kept in the store."""
        if not key:
            key = await clients.setting(KEY_SETTING, lambda: secrets.token_urlsafe(64))
        return cls(clients, key, token_ttl=token_ttl)

    async def _client(self, client_id: str) -> ApiClient | None:
        cached = self._clients.get(client_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < CLIENT_CACHE_SECONDS:
            return cached[0]
        client = await self.clients.get(client_id)
        if len(self._clients) > _TOKEN_CACHE_SIZE:
            self._clients.clear()
        self._clients[client_id] = (client, now)
        return client

    def derived_key(self, purpose: str) -> bytes:
        """A key for another use (the dashboard's session cookie), derived from the signing
        key: shared by every node like it, and never the signing key itself."""
        return hmac.new(self._key.encode(), purpose.encode(), hashlib.sha256).digest()

    def forget(self, client_id: str) -> None:
        self._clients.pop(client_id, None)

    async def authenticate_client(self, client_id: str, secret: str) -> ApiClient | None:
        """The client if the secret is right and it is not revoked (read fresh, not cached)."""
        if "\x00" in client_id or len(client_id) > MAX_TEXT_LENGTH:
            return None  # no client has such an id: no need to ask the store (or break it)
        client = await self.clients.get(client_id)
        if (
            client is None
            or client.revoked is not None
            or not check_secret(secret, client.secret_hash)
        ):
            return None
        return client

    def issue(self, client: ApiClient, requested: Iterable[str] | None = None) -> dict[str, object]:
        """An access token for `client`, with the requested scopes it holds (default: all)."""
        scopes = set(client.scopes) if requested is None else set(requested)
        if not scopes <= set(client.scopes):
            raise ValueError(
                f"the client may not have {', '.join(sorted(scopes - set(client.scopes)))}"
            )
        now = int(time.time())
        scope = " ".join(sorted(scopes))
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": client.id,
            "owner": client.owner,
            "scope": scope,
            "iat": now,
            "exp": now + int(self.token_ttl),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key, algorithm="HS256")
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self.token_ttl),
            "scope": scope,
        }

    def _decode(self, token: str) -> tuple[Caller, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("JWT is expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("signature verification failed") from None
        except jwt.MissingRequiredClaimError as e:
            raise Unauthorized(f"missing claim {e.claim}") from None
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid token ({e})") from None
        caller = Caller(
            client_id=str(claims["sub"]),
            owner=str(claims.get("owner") or claims["sub"]),
            scopes=frozenset(str(claims["scope"]).split()),
        )
        return caller, float(claims["exp"])

    async def bearer(self, token: str) -> Caller:
        """The caller a bearer token stands for; Unauthorized when it does not check out."""
        cached = self._tokens.get(token)
        if cached is None or cached[1] <= time.time():
            cached = self._decode(token)
            if len(self._tokens) > _TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[token] = cached
        caller = cached[0]
        client = await self._client(caller.client_id)
        if client is None or client.revoked is not None:
            raise Unauthorized("the client was revoked")
        return caller

    async def basic(self, client_id: str, secret: str) -> Caller:
        client = await self.authenticate_client(client_id, secret)
        if client is None:
            raise Unauthorized("bad client credentials", error="invalid client credentials")
        return Caller(client.id, client.owner, frozenset(client.scopes))

    async def from_header(self, header: str | None, *, allow_basic: bool = False) -> Caller:
        """The caller of a request from its Authorization header."""
        if not header:
            raise Unauthorized("no bearer token in the Authorization header")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return await self.bearer(value.strip())
        if allow_basic:
            creds = basic_credentials(header)
            if creds is not None:
                return await self.basic(*creds)
        raise Unauthorized("the Authorization header is not 'Bearer <token>'")
