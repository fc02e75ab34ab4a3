"""``omnistock keys``: API keys in the data directory's key file.

The file (``OMNISTOCK_DATA_DIR/api-keys``) holds one ``<sha256 of key>:<role>[:<name>]`` a line,
never a key itself: a new key is printed once and only its digest is kept. A running service
reads the file again within a second of a change (``omnistock.api.auth.KeyFile``), so keys
created or revoked here take effect without a restart. Keys are named by their key id, the
digest's first 12 hex characters, as in the service's logs.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

from omnistock.api.auth import (
    KEY_FILE,
    ROLE_NAMES,
    KeyConfigError,
    KeyEntry,
    digest,
    read_key_file,
)
from omnistock.runtime.settings import Settings

HEADER = "# omnistock API keys: <sha256 of key>:<role>[:<name>]\n"
NAME = re.compile(r"^[A-Za-z0-9._@ -]{1,64}$")

DESCRIPTION = """\
Create, list and revoke the API keys of the data directory (OMNISTOCK_DATA_DIR/api-keys).

Roles: storefront reads availability and quotes; oms also reserves, holds, transfers and places
orders; admin also manages nodes and stock. The file keeps only each key's SHA-256 digest; a new
key is printed once. A running service picks up changes within a second, without a restart.
When OMNISTOCK_API_KEYS is set, the service uses those keys and ignores this file."""

EPILOG = """\
examples:
  omnistock keys create --role storefront --name web-shop
  omnistock keys list
  omnistock keys revoke 3f2a9c1d0b7e
"""


def key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def new_key() -> str:
    return "osk_" + secrets.token_urlsafe(32)


def append_entry(path: Path, entry: KeyEntry) -> None:
    """Adds one line with a single append, so concurrent writers and the service's reload
    never see half a line; a new file is created readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        text = HEADER + entry.line() + "\n"
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        text = entry.line() + "\n"
        if not path.read_bytes().endswith(b"\n") and path.stat().st_size > 0:
            text = "\n" + text
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def create(settings: Settings, role: str, name: str) -> tuple[str, KeyEntry]:
    key = new_key()
    entry = KeyEntry(digest(key), ROLE_NAMES[role], name)
    append_entry(key_path(settings), entry)
    return key, entry


def entries(settings: Settings) -> list[KeyEntry]:
    path = key_path(settings)
    return read_key_file(path) if path.exists() else []


def revoke(settings: Settings, key_id: str) -> KeyEntry:
    """Removes the key whose id starts with ``key_id`` (6+ hex characters, naming one key);
    the file is rewritten and swapped in whole."""
    path = key_path(settings)
    if len(key_id) < 6:
        raise KeyConfigError("give at least the first 6 characters of the key id")
    matching = [e for e in entries(settings) if e.digest.startswith(key_id.lower())]
    if len(matching) != 1:
        raise KeyConfigError(
            f"{'no key' if not matching else f'{len(matching)} keys'} with id {key_id}"
        )
    kept = [
        line
        for line in path.read_text().splitlines()
        if not line.strip().startswith(matching[0].digest)
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(kept) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return matching[0]


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "keys",
        help="create, list and revoke API keys (picked up by a running service)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = actions.add_parser(
        "create",
        help="generate a key for a role and print it once",
        description="Generate a key, store its SHA-256 digest and role, print the key once.",
        epilog="example:\n  omnistock keys create --role oms --name order-service",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--role", required=True, choices=tuple(ROLE_NAMES))
    c.add_argument("--name", default="", help="what the key is for (letters, digits, ._@ -)")
    c.add_argument("--quiet", action="store_true", help="print only the key (for scripts)")
    actions.add_parser(
        "list",
        help="key ids, roles and names (never keys)",
        description="List the key file's entries: key id (digest prefix), role and name.",
    )
    r = actions.add_parser(
        "revoke",
        help="remove a key by its id",
        description="Remove a key from the key file; a running service refuses it within a second.",
        epilog="example:\n  omnistock keys revoke 3f2a9c1d0b7e",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("key_id", help="the key id shown by `omnistock keys list` (6+ characters)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _run(args, settings)
    except (KeyConfigError, OSError) as exc:
        print(f"omnistock keys: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.api_keys and args.keys_command != "list":
        print(
            "omnistock keys: note: OMNISTOCK_API_KEYS is set here; a service started with it "
            "uses those keys and ignores the key file",
            file=sys.stderr,
        )
    if args.keys_command == "create":
        if args.name and not NAME.match(args.name):
            print(
                "omnistock keys: --name: 1 to 64 letters, digits, . _ @ - or spaces",
                file=sys.stderr,
            )
            return 2
        key, entry = create(settings, args.role, args.name)
        if not any(e.role.name == "ADMIN" for e in entries(settings)):
            print(
                "omnistock keys: note: the key file has no admin key, and serve creates one "
                "only when there is no file: create one with --role admin",
                file=sys.stderr,
            )
        if args.quiet:
            print(key)
        else:
            print(
                f"created {args.role} key {entry.key_id}"
                f"{f' ({args.name})' if args.name else ''} in {key_path(settings)}; "
                f"shown once, keep it safe:\n  {key}"
            )
        return 0
    if args.keys_command == "list":
        found = entries(settings)
        if not found:
            print(f"no keys in {key_path(settings)}")
            return 0
        print(f"{'key id':<14}{'role':<12}name")
        for e in found:
            print(f"{e.key_id:<14}{e.role.name.lower():<12}{e.name}")
        return 0
    if args.keys_command == "revoke":
        entry = revoke(settings, args.key_id)
        print(f"revoked {entry.role.name.lower()} key {entry.key_id} {entry.name}".rstrip())
        if not any(e.role.name == "ADMIN" for e in entries(settings)):
            print("note: no admin key is left in the file", file=sys.stderr)
        return 0
    return 2
