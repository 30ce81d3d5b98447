"""API clients: scopes, secrets kept only as salted hashes, and the first-start admin client.

Secrets are 256 random bits (`secrets.token_urlsafe(32)`), so a salted SHA-256 is as safe as a
slow password hash and keeps Basic authentication (the Jira dialect) cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from taskstatus.caller import ADMIN, READ, SCOPES, WRITE
from taskstatus.store.base import ApiClient, Store

__all__ = [
    "ADMIN",
    "READ",
    "SCOPES",
    "WRITE",
    "ApiClient",
    "Clients",
    "IssuedClient",
    "bootstrap_admin",
    "check_secret",
    "hash_secret",
    "new_client",
]

_BOOTSTRAP = "bootstrap.admin_client"


@dataclass(frozen=True, slots=True)
class IssuedClient:
    """A client as created: the only moment its secret is known."""

    client: ApiClient
    secret: str

    def as_json(self) -> dict[str, str]:
        return {"client_id": self.client.id, "client_secret": self.secret}


def hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()
    return f"sha256${salt}${digest}"


def check_secret(secret: str, hashed: str) -> bool:
    try:
        scheme, salt, _ = hashed.split("$", 2)
    except ValueError:
        return False
    return scheme == "sha256" and hmac.compare_digest(hash_secret(secret, salt), hashed)


def new_client(name: str, scopes: Iterable[str], owner: str | None, now: datetime) -> IssuedClient:
    """A client with a fresh id and secret (not stored yet). The owner defaults to the name."""
    granted = tuple(sorted(set(scopes)))
    unknown = set(granted) - set(SCOPES)
    if unknown or not granted:
        raise ValueError(
            f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(granted) or 'none'}"
        )
    if not name.strip():
        raise ValueError("a client needs a name")
    secret = secrets.token_urlsafe(32)
    client = ApiClient(
        id=uuid.uuid4().hex,
        name=name,
        secret_hash=hash_secret(secret),
        scopes=granted,
        owner=owner or name,
        created=now,
    )
    return IssuedClient(client, secret)


class Clients:
    """The API clients of one store, and the settings the nodes sharing it agree on (the
    token signing key). What `taskstatus clients` and the API's authentication use."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, client_id: str) -> ApiClient | None:
        return await self._store.client(client_id)

    async def list_all(self) -> list[ApiClient]:
        return await self._store.clients()

    async def create(
        self, name: str, scopes: Iterable[str], owner: str | None, now: datetime
    ) -> IssuedClient:
        """A new client, stored; ValueError if an active client already has the name."""
        taken = [c for c in await self._store.clients() if c.name == name and c.revoked is None]
        if taken:
            raise ValueError(f"an active client is already named {name!r} ({taken[0].id})")
        issued = new_client(name, scopes, owner, now)
        await self._store.save_client(issued.client)
        return issued

    async def revoke(self, client_id: str, now: datetime) -> bool:
        """Revoke the client (False: it already was); ValueError if there is none."""
        if await self._store.client(client_id) is None:
            raise ValueError(f"no client with id {client_id}")
        return await self._store.revoke_client(client_id, now)

    async def setting(self, key: str, default: Callable[[], str]) -> str:
        """The shared setting `key`; the first node to ask stores `default()`."""
        return await self._store.setting(key, default)

    async def bootstrap_admin(self, credentials_file: Path, now: datetime) -> IssuedClient | None:
        """See `bootstrap_admin`."""
        return await bootstrap_admin(self._store, credentials_file, now)


async def bootstrap_admin(
    store: Store, credentials_file: Path, now: datetime
) -> IssuedClient | None:
    """On the first start of an empty database, create an admin client and write its
    credentials to `credentials_file` (mode 0600). Nodes starting together agree through the
    store on which one creates it; the others, and every later start, return None."""
    if await store.clients():
        return None
    issued = new_client("admin", SCOPES, "admin", now)
    winner = await store.setting(_BOOTSTRAP, lambda: issued.client.id)
    if winner != issued.client.id:
        return None
    await store.save_client(issued.client)
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(issued.as_json(), out, indent=2)
        out.write("\n")
    os.chmod(credentials_file, 0o600)  # also when the file existed with wider permissions
    return issued
