"""API keys: created once, shown once, stored only as a sha256 hash in ``$HEARTH_HOME/keys.json``.

Two roles, as Open WebUI's admin and user: ``hearth keys create NAME`` makes an **admin** key (the
owner's: everything, like the CLI), ``--kb a,b`` a key **scoped** to those knowledge bases (chat,
search and upload there; no training, settings, inspector or other callers' jobs), and ``--user`` a
non-admin key for every knowledge base. The server resolves a key once into an ``access.Principal``;
the CLI (``hearth keys``) and the server share these functions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hearth import paths
from hearth.access import Forbidden, Principal
from hearth.errors import HearthError, NotFound

__all__ = ["APIKey", "AuthError", "Forbidden", "check_key", "create_key", "principal", "revoke_key"]

PREFIX = "hth-"
_lock = threading.Lock()


class AuthError(HearthError):
    status = 401
    code = "invalid_api_key"


@dataclass
class APIKey:
    name: str
    sha256: str
    created: float = field(default_factory=time.time)
    kbs: list[str] | None = None  # None = every knowledge base
    admin: bool | None = None  # None (keys made before roles): admin unless limited to some kbs

    @property
    def is_admin(self) -> bool:
        return self.kbs is None if self.admin is None else self.admin and self.kbs is None

    def principal(self) -> Principal:
        """What this key may do, as every surface asks it."""
        return Principal(self.name, admin=self.is_admin, kbs=None if self.kbs is None else frozenset(self.kbs))


def keys_file() -> Path:
    return paths.home() / "keys.json"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_keys() -> list[APIKey]:
    file = keys_file()
    if not file.exists():
        return []
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise HearthError(f"{file} is not valid JSON", "fix or delete it, then create keys again") from None
    return [APIKey(**item) for item in data.get("keys", [])]


def _save(keys: list[APIKey]) -> None:
    file = keys_file()
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": [asdict(k) for k in keys]}, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)  # hashes only, but nobody else needs to read them
    tmp.replace(file)


def create_key(name: str, kbs: list[str] | None = None, admin: bool | None = None) -> str:
    """Make a new key and return it; only its hash is kept, so this is the one time it can be seen.

    ``admin`` defaults to "no kb limits": a key limited to some knowledge bases is never an admin."""
    name = name.strip()
    kbs = [k for k in kbs or [] if k] or None
    if not name:
        raise HearthError("a key needs a name", "e.g. hearth keys create alice")
    if admin and kbs:
        raise HearthError(
            "an admin key cannot be limited to some knowledge bases", "drop --admin, or drop --kb for an admin key"
        )
    with _lock:
        keys = load_keys()
        if any(k.name == name for k in keys):
            raise HearthError(f"a key named '{name}' exists", f"revoke it first: hearth keys revoke {name}")
        secret = PREFIX + secrets.token_urlsafe(32)
        keys.append(APIKey(name=name, sha256=_hash(secret), kbs=kbs, admin=kbs is None if admin is None else admin))
        _save(keys)
    return secret


def revoke_key(name: str) -> None:
    with _lock:
        keys = load_keys()
        kept = [k for k in keys if k.name != name]
        if len(kept) == len(keys):
            raise NotFound(f"no key named '{name}'", "hearth keys list shows the names")
        _save(kept)


def check_key(secret: str | None) -> APIKey:
    """The key that ``secret`` is, or AuthError."""
    if not secret:
        raise AuthError(
            "this server needs an API key",
            "send it as 'Authorization: Bearer <key>'; create one with `hearth keys create NAME`",
        )
    digest = _hash(secret)
    for key in load_keys():
        if hmac.compare_digest(key.sha256, digest):
            return key
    raise AuthError("the API key is not valid", "check for typos, or create a new one with `hearth keys create NAME`")


def principal(secret: str | None) -> Principal:
    """The ``Principal`` a key resolves to (AuthError if it is not a key): what the middleware stores."""
    return check_key(secret).principal()
