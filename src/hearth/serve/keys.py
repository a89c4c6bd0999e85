"""API keys: created once, shown once, stored only as a sha256 hash in ``$HEARTH_HOME/keys.json``.

A key may be limited to some knowledge bases; such a key can neither search nor list the others.
The CLI (``hearth keys``) and the server share these functions.
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
from hearth.errors import HearthError, NotFound

PREFIX = "hth-"
_lock = threading.Lock()


class AuthError(HearthError):
    status = 401
    code = "invalid_api_key"


class Forbidden(HearthError):
    status = 403
    code = "forbidden"


@dataclass
class APIKey:
    name: str
    sha256: str
    created: float = field(default_factory=time.time)
    kbs: list[str] | None = None  # None = every knowledge base

    def allows_kb(self, kb: str) -> bool:
        return self.kbs is None or kb in self.kbs


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


def create_key(name: str, kbs: list[str] | None = None) -> str:
    """Make a new key and return it; only its hash is kept, so this is the one time it can be seen."""
    name = name.strip()
    if not name:
        raise HearthError("a key needs a name", "e.g. hearth keys create alice")
    with _lock:
        keys = load_keys()
        if any(k.name == name for k in keys):
            raise HearthError(f"a key named '{name}' exists", f"revoke it first: hearth keys revoke {name}")
        secret = PREFIX + secrets.token_urlsafe(32)
        keys.append(APIKey(name=name, sha256=_hash(secret), kbs=[k for k in kbs or [] if k] or None))
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
