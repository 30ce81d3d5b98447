"""Where the remote client finds its OAuth2 client credentials, and saved logins.

In order: the arguments (``client_id=``, ``client_secret=``); ``TASKSTATUS_CLIENT_ID`` and
``TASKSTATUS_CLIENT_SECRET``; a credentials file (``credentials_file=`` or
``TASKSTATUS_CREDENTIALS_FILE``, the JSON ``{"client_id", "client_secret"}`` that ``serve``
and ``clients create --json`` write); the login saved for the server by ``taskstatus login``;
and, for a server on this host (localhost, 127.0.0.1, ::1) only, ``./taskstatus-credentials.json``,
the file the first start of ``serve`` writes in its working directory.

Saved logins live in ``logins.json`` in the user's config directory
(``$TASKSTATUS_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/taskstatus``, else
``~/.config/taskstatus``; ``%APPDATA%\\taskstatus`` on Windows), mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ClientCredentials",
    "config_dir",
    "find_credentials",
    "forget_login",
    "logins_file",
    "save_login",
    "saved_login",
    "server_key",
]

LOCAL_FILE = "taskstatus-credentials.json"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    source: str  # where they came from, for messages (never the secret)

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, source={self.source!r})"


def config_dir() -> Path:
    explicit = os.environ.get("TASKSTATUS_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "taskstatus"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "taskstatus"


def logins_file() -> Path:
    return config_dir() / "logins.json"


def server_key(url: str) -> str:
    """The server a URL names, as logins are keyed: scheme://host[:port][/path], lowercase
    scheme and host, no trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a server URL: {url!r} (expected http(s)://host[:port])")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data


def _from_file(path: Path, source: str) -> ClientCredentials:
    data = _read(path, "credentials file")
    client_id, secret = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise ValueError(f"credentials file {path} needs client_id and client_secret")
    return ClientCredentials(client_id, secret, source)


def _logins() -> dict[str, dict[str, str]]:
    path = logins_file()
    if not path.exists():
        return {}
    data = _read(path, "saved logins")
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _write_logins(logins: dict[str, dict[str, str]]) -> Path:
    path = logins_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(logins, out, indent=2, sort_keys=True)
        out.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def saved_login(url: str) -> ClientCredentials | None:
    entry = _logins().get(server_key(url))
    if not entry or "client_id" not in entry or "client_secret" not in entry:
        return None
    return ClientCredentials(entry["client_id"], entry["client_secret"], f"login for {url}")


def save_login(url: str, client_id: str, client_secret: str) -> Path:
    """Remember the credentials for `url` (0600); the file's path."""
    logins = _logins()
    logins[server_key(url)] = {"client_id": client_id, "client_secret": client_secret}
    return _write_logins(logins)


def forget_login(url: str) -> bool:
    """Forget the saved login for `url`; False when there was none."""
    logins = _logins()
    if logins.pop(server_key(url), None) is None:
        return False
    _write_logins(logins)
    return True


def find_credentials(
    url: str,
    client_id: str | None = None,
    client_secret: str | None = None,
    credentials_file: str | os.PathLike[str] | None = None,
) -> ClientCredentials | None:
    """The credentials for `url` from the first place that has them (see the module doc)."""
    if client_id or client_secret:
        if not (client_id and client_secret):
            raise ValueError("give both client_id and client_secret, or neither")
        return ClientCredentials(client_id, client_secret, "arguments")
    env_id, env_secret = (
        os.environ.get("TASKSTATUS_CLIENT_ID"),
        os.environ.get("TASKSTATUS_CLIENT_SECRET"),
    )
    if env_id or env_secret:
        if not (env_id and env_secret):
            raise ValueError("set both TASKSTATUS_CLIENT_ID and TASKSTATUS_CLIENT_SECRET")
        return ClientCredentials(env_id, env_secret, "TASKSTATUS_CLIENT_ID/_SECRET")
    file = credentials_file or os.environ.get("TASKSTATUS_CREDENTIALS_FILE")
    if file:
        return _from_file(Path(file), str(file))
    saved = saved_login(url)
    if saved is not None:
        return saved
    local = Path(LOCAL_FILE)
    if (urlsplit(url).hostname or "").lower() in _LOOPBACK and local.is_file():
        return _from_file(local, f"./{LOCAL_FILE}")
    return None
