"""API keys and roles: ``Authorization: Bearer <key>``.

Keys are kept only as SHA-256 digests and named in logs by a short key id (the digest's first
12 hex characters). A presented key is hashed and its digest compared with every stored one.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.types import Scope


class Role(enum.IntEnum):
    STOREFRONT = 1
    OMS = 2
    ADMIN = 3


ROLE_NAMES = {role.name.lower(): role for role in Role}
KEY_FILE = "api-keys"

log = logging.getLogger("omnistock.auth")


class KeyConfigError(ValueError):
    """OMNISTOCK_API_KEYS or the key file cannot be read; the message says where."""


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, digests: dict[str, Role]) -> None:
        self._by_digest = dict(digests)

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def parse(cls, spec: str) -> ApiKeys:
        """``key1:admin,key2:oms`` as in OMNISTOCK_API_KEYS."""
        digests: dict[str, Role] = {}
        for i, item in enumerate(p.strip() for p in spec.split(",")):
            if not item:
                continue
            key, sep, role = item.rpartition(":")
            if not sep or not key or role.strip().lower() not in ROLE_NAMES:
                raise KeyConfigError(
                    f"OMNISTOCK_API_KEYS entry {i + 1} must be <key>:<role> with role one of "
                    + ", ".join(ROLE_NAMES)
                )
            if len(key) < 16:
                raise KeyConfigError(f"OMNISTOCK_API_KEYS entry {i + 1}: keys need 16+ characters")
            digests[digest(key)] = ROLE_NAMES[role.strip().lower()]
        if not digests:
            raise KeyConfigError("OMNISTOCK_API_KEYS names no key")
        return cls(digests)

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        """A key file: one ``<sha256 hex>:<role>[:<name>]`` per line."""
        return cls({entry.digest: entry.role for entry in read_key_file(path)})

    def authenticate(self, key: str) -> Principal | None:
        """Every stored digest is compared, each in constant time, so neither which key matched
        nor how much of it did shows in the time taken."""
        presented = digest(key)
        found: Role | None = None
        for stored, role in self._by_digest.items():
            if hmac.compare_digest(stored, presented):
                found = role
        return None if found is None else Principal(presented[:12], found)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    digest: str
    role: Role
    name: str = ""

    @property
    def key_id(self) -> str:
        return self.digest[:12]

    def line(self) -> str:
        role = self.role.name.lower()
        return f"{self.digest}:{role}:{self.name}" if self.name else f"{self.digest}:{role}"


def read_key_file(path: Path) -> list[KeyEntry]:
    """The entries of a key file: one ``<sha256 hex>:<role>[:<name>]`` a line; blank lines and
    lines starting with ``#`` are skipped."""
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        hexdigest, _, rest = line.strip().partition(":")
        role, _, name = rest.partition(":")
        if len(hexdigest) != 64 or role not in ROLE_NAMES:
            raise KeyConfigError(f"{path}:{n}: expected <sha256 hex>:<role>[:<name>]")
        entries.append(KeyEntry(hexdigest, ROLE_NAMES[role], name))
    return entries


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class KeyFile(ApiKeys):
    """The data directory's key file, read again when it changes, so that a key added (or
    removed) with ``omnistock keys`` works (or stops working) in a running service within a
    second, without a restart. Whether it changed is a ``stat``, made at most once a second;
    a file that cannot be read then is logged and the keys already loaded stay in force."""

    RECHECK_S = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = _stamp(path)
        super().__init__({e.digest: e.role for e in read_key_file(path)})
        self._next_check = time.monotonic() + self.RECHECK_S

    def authenticate(self, key: str) -> Principal | None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.RECHECK_S
            self.reload_if_changed()
        return super().authenticate(key)

    def reload_if_changed(self) -> bool:
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            entries = read_key_file(self.path)
        except (KeyConfigError, OSError) as exc:
            log.warning("API key file not reloaded, the keys loaded before stay: %s", exc)
            return False
        self._by_digest = {e.digest: e.role for e in entries}
        log.info("API key file reloaded: %d key(s)", len(entries))
        return True


def first_start_admin_key(data_dir: Path) -> tuple[ApiKeys, str | None]:
    """The keys of the data directory's key file, creating it with one new admin key when there
    is none. Returns the keys, and the new key itself the one time it is created."""
    path = data_dir / KEY_FILE
    if path.exists():
        return ApiKeys.load(path), None
    key = "osk_" + secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"# omnistock API keys: <sha256 of key>:<role>\n{digest(key)}:admin\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return ApiKeys.load(path), key


def resolve_keys(spec: str | None, data_dir: Path) -> ApiKeys:
    """Keys from OMNISTOCK_API_KEYS when set, else from the data directory's key file."""
    if spec:
        return ApiKeys.parse(spec)
    path = data_dir / KEY_FILE
    if not path.exists():
        raise KeyConfigError(f"no OMNISTOCK_API_KEYS and no key file at {path}")
    return KeyFile(path)


def _bearer(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise NotAuthorizedException("Authorization must be Bearer <key>")
            return key.strip()
    raise NotAuthorizedException("missing Authorization: Bearer <key>")


def authorize(scope: Scope, keys: ApiKeys, role: Role) -> Principal:
    """The caller's principal, if its key has ``role`` or higher: 401 without a known key,
    403 with a role too low."""
    principal = keys.authenticate(_bearer(scope["headers"]))
    if principal is None:
        raise NotAuthorizedException("unknown API key")
    if principal.role < role:
        needed, held = role.name.lower(), principal.role.name.lower()
        raise PermissionDeniedException(f"this needs the {needed} role; the key has {held}")
    scope["principal"] = principal  # type: ignore[typeddict-unknown-key]
    return principal


def principal_of(connection: ASGIConnection) -> Principal:
    principal = connection.scope.get("principal")  # type: ignore[typeddict-item]
    if principal is None:
        raise NotAuthorizedException("this route needs an API key")
    return principal
