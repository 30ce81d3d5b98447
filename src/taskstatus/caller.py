"""Who is asking: what every interface hands the service with each call. No I/O.

The HTTP API makes a `Caller` from a token (its client, owner and scopes) and the retention
window; a database connection, the CLI and the worker act for their process: `Caller.local`,
an admin with no retention cutoff. The service (taskstatus.service) alone decides from it
what the caller may see and change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ADMIN", "READ", "SCOPES", "WRITE", "Caller"]

READ, WRITE, ADMIN = "tasks:read", "tasks:write", "tasks:admin"
SCOPES = (READ, WRITE, ADMIN)


@dataclass(frozen=True, slots=True)
class Caller:
    """A client, its owner (the launcher of what it submits, and without the admin scope the
    only launcher whose tasks it sees), its scopes, and the retention cutoff: tasks created
    before `cutoff` are answered as if they did not exist (None: no cutoff)."""

    client_id: str
    owner: str
    scopes: frozenset[str]
    cutoff: datetime | None = None

    @property
    def admin(self) -> bool:
        """Sees and changes every task; may submit for another launcher."""
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return self.admin or scope in self.scopes

    @classmethod
    def local(cls, owner: str) -> Caller:
        """This process acting for itself (a database connection, the CLI, a worker): every
        scope, no retention cutoff; what it submits is launched by `owner` by default."""
        return cls(client_id=f"local:{owner}", owner=owner, scopes=frozenset(SCOPES))
