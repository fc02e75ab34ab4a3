"""The ``omnistock`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import urllib.parse

import msgspec

from omnistock.runtime.settings import Settings, SettingsError

log = logging.getLogger("omnistock")

# Descriptors a worker keeps for itself (Redis and database connections, logs, its own files)
# beyond its HTTP connections.
FILES_KEPT_FREE = 256


DESCRIPTION = """\
Real-time inventory ledger and order routing for omnichannel retail.

Configuration comes from the environment: with none, every command works on the embedded
default under OMNISTOCK_DATA_DIR (default ./.omnistock): a bundled Valkey and a SQLite file. The
tools (seed, import, reconcile, rebuild, projector, prune-functions) reach the Valkey of a
service running there, or start it themselves when the service is stopped.
OMNISTOCK_REDIS_URL and OMNISTOCK_DATABASE_URL switch to external servers.
`omnistock COMMAND --help` for each command."""

EPILOG = """\
getting started:
  omnistock serve --demo                 # the API on :8000 with a demo retailer loaded
  omnistock keys create --role storefront --name web-shop
  omnistock import counts.csv            # your own counted stock
  omnistock reconcile                    # the journal against the live ledger
"""


def _parser() -> argparse.ArgumentParser:
    from omnistock.runtime import bench_cli, demo_cli, importer, keys_cli

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="omnistock", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the HTTP API (embedded Valkey and SQLite under OMNISTOCK_DATA_DIR unless "
        "OMNISTOCK_REDIS_URL / OMNISTOCK_DATABASE_URL are set)",
        description="Run the HTTP API on granian until SIGINT/SIGTERM. On first start with no "
        "OMNISTOCK_API_KEYS it creates an admin key, prints it once and keeps its digest in "
        "OMNISTOCK_DATA_DIR/api-keys. In-flight requests finish on SIGTERM; the embedded Valkey "
        "stops last. The journal's projector runs in this process (OMNISTOCK_PROJECTOR=0 leaves "
        "it to `omnistock projector`).",
        epilog="examples:\n  omnistock serve\n  omnistock serve --demo\n"
        "  omnistock serve --host 0.0.0.0 --port 8080 --workers 4",
        formatter_class=raw,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="when the catalog has no node, load the demo retailer first (see `seed --help`)",
    )
    demo_cli.add_parser(commands)
    importer.add_parser(commands)
    keys_cli.add_parser(commands)
    commands.add_parser(
        "projector",
        help="project the ledger's events into the journal, alone (until Ctrl-C)",
        description="Read the ledger's event streams through the consumer group `journal` and "
        "write each event once into the journal's events table, until SIGINT/SIGTERM. Run it "
        "when the service is started with OMNISTOCK_PROJECTOR=0.",
        epilog="example:\n  OMNISTOCK_PROJECTOR=0 omnistock serve & omnistock projector",
        formatter_class=raw,
    )
    commands.add_parser(
        "reconcile",
        help="replay the journal into positions and compare with the live ledger "
        "(exit status 1 on any difference)",
        description="Replay the journal into positions and compare them with the live ledger; "
        "print every difference. Exit status 1 when there is any (for instance writes a Redis "
        "failover lost), 0 when they agree.",
        epilog="example:\n  omnistock reconcile || omnistock rebuild --force",
        formatter_class=raw,
    )
    rebuild = commands.add_parser(
        "rebuild",
        help="restore the live ledger from the database after Redis lost data",
        description="Restore the live ledger's positions, reservations, holds and transfers "
        "from the journal in the database, after Redis lost data. Refused over a ledger that "
        "is not empty unless --force.",
        epilog="examples:\n  omnistock rebuild\n  omnistock rebuild --force",
        formatter_class=raw,
    )
    rebuild.add_argument(
        "--force", action="store_true", help="also over a ledger that is not empty"
    )
    prune = commands.add_parser(
        "prune-functions",
        help="delete the ledger's function libraries of other versions from Valkey",
        description="Each version of omnistock loads the ledger into Valkey as function "
        "libraries named by a digest of their code, so two versions run side by side during a "
        "roll. Once no process of an older version runs, this deletes their libraries (on "
        "every primary of a cluster) and keeps this version's. A process of another version "
        "that still runs loads its own again at its next call.",
        epilog="examples:\n  omnistock prune-functions --dry-run\n  omnistock prune-functions",
        formatter_class=raw,
    )
    prune.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    bench_cli.add_parser(commands)
    return parser


def serve(settings: Settings, host: str, port: int, workers: int, *, demo: bool = False) -> int:
    """Prepares what the workers share (API keys, database schema, the embedded Valkey), then
    runs the API on granian until SIGINT/SIGTERM. Granian lets in-flight requests finish; the
    embedded Valkey stops last. A crashed embedded Valkey ends the service with status 1."""
    from granian import Granian
    from granian.constants import Interfaces
    from sqlalchemy.exc import SQLAlchemyError

    from omnistock.api.auth import KeyConfigError, first_start_admin_key, resolve_keys
    from omnistock.runtime.bootstrap import (
        UNREACHABLE,
        prepare_database,
        redis_misconfiguration,
        start_embedded_valkey,
    )
    from omnistock.runtime.tools import ProjectorThread, url_file
    from omnistock.runtime.valkey_server import ValkeyStartError
    from omnistock.runtime.worker_failures import stop_after_repeated_failures

    # Until granian installs its own handlers, a stop request unwinds through the finally blocks
    # below, so an embedded Valkey already started is stopped, not orphaned.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if settings.api_keys:
            resolve_keys(settings.api_keys, settings.data_dir)
        else:
            _keys, created = first_start_admin_key(settings.data_dir)
            if created:
                print(
                    f"omnistock: created an admin API key (shown once, stored only as a hash in "
                    f"{settings.data_dir / 'api-keys'}):\n  {created}",
                    flush=True,
                )
    except KeyConfigError as exc:
        print(f"omnistock: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(prepare_database(settings))
    except UNREACHABLE as exc:
        return _stopped(f"the database could not be reached: {exc}")
    except SQLAlchemyError as exc:  # a URL it cannot use, credentials it refuses
        return _stopped(f"the database cannot be used: {_named(exc)}")
    if misconfigured := asyncio.run(redis_misconfiguration(settings)):
        return _stopped(f"{_redacted(settings.redis_url)} cannot be used: {_named(misconfigured)}")

    embedded = None
    crashed: list[int] = []
    if settings.redis_url is None:
        try:
            embedded = start_embedded_valkey(settings)
        except ValkeyStartError as exc:  # another service on this data directory, say
            return _stopped(f"the embedded valkey-server did not start: {exc}")
    # Snapshots of a previous run's workers (after the Valkey claimed the data directory, so
    # a service refused for running on another's directory leaves that one's alone).
    shutil.rmtree(settings.data_dir / "metrics", ignore_errors=True)
    if embedded is not None:
        os.environ["OMNISTOCK_REDIS_URL"] = embedded.url
        os.environ["OMNISTOCK_REDIS_CLUSTER"] = "0"
        url_file(settings).write_text(embedded.url + "\n")

        def on_exit(code: int) -> None:
            crashed.append(code)
            log.error("the embedded valkey-server exited unexpectedly with code %s", code)
            os.kill(os.getpid(), signal.SIGTERM)

        embedded.monitor(on_exit)
    os.environ["OMNISTOCK_DATA_DIR"] = str(settings.data_dir)

    def on_workers_failing() -> None:
        crashed.append(1)
        os.kill(os.getpid(), signal.SIGTERM)

    stop_after_repeated_failures(workers, on_workers_failing)
    projector = None
    try:
        if demo:
            # Before the projector thread: both open the database, and Alembic's migration
            # context is one per process, not per thread.
            _seed_demo(settings, host, port)
        if settings.projector:
            # One projector for the service, in this process; the workers only serve requests.
            os.environ["OMNISTOCK_PROJECTOR"] = "0"
            projector = ProjectorThread(
                msgspec.structs.replace(settings, redis_url=os.environ["OMNISTOCK_REDIS_URL"])
                if embedded is not None
                else settings
            )
            projector.start()
        print(
            f"omnistock listening on http://{host}:{port} ({workers} worker(s); valkey at "
            f"{_redacted(os.environ.get('OMNISTOCK_REDIS_URL'))} "
            f"({'embedded' if embedded else 'external'}, durability={settings.durability}); "
            f"database {'external' if settings.database_url else 'sqlite'})",
            flush=True,
        )
        # Workers start as fresh interpreters, not as forks of this process: it runs threads
        # (the projector, the embedded Valkey's watcher), and a worker forked while one of them
        # held a lock (an import in progress, say) waited on it for ever and never started.
        multiprocessing.set_start_method("spawn", force=True)
        Granian(
            "omnistock.api.app:create_worker_asgi",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            log_access=False,
            # In-flight requests end within the request timeout; a worker stopped while it is
            # still starting up can miss the stop signal, and is killed after this.
            workers_kill_timeout=max(5, int(2 * settings.request_timeout_s) + 2),
            # A worker that dies (killed for memory, a crash in native code) is replaced, where
            # granian would otherwise stop the whole service, cutting off every other worker's
            # requests. Workers that cannot start still stop the service: granian sees a crash
            # loop when a replacement dies within seconds, and stop_after_repeated_failures
            # when it takes longer.
            respawn_failed_workers=True,
            # Granian holds a permit per open connection, idle keep-alive ones included, and its
            # default (1,024 per worker) let a few clients' connection pools, or 1,024 sockets
            # that never send a byte, stop a worker from taking any other connection.
            backpressure=connection_limit(
                settings.max_connections, resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            ),
        ).serve()
    finally:
        if projector is not None:
            projector.stop()
        if embedded is not None:
            url_file(settings).unlink(missing_ok=True)
            embedded.stop()
    if crashed:
        return 1
    print("omnistock stopped", flush=True)
    return 0


def connection_limit(wanted: int, open_files: int) -> int:
    """``wanted`` connections per worker, or fewer if ``open_files``, the hard limit on open
    files (granian raises each worker's soft limit to it), leaves less room: past it accepting
    fails."""
    if open_files == resource.RLIM_INFINITY or wanted <= open_files - FILES_KEPT_FREE:
        return wanted
    allowed = max(16, open_files - FILES_KEPT_FREE)
    log.warning(
        "OMNISTOCK_MAX_CONNECTIONS=%d is more than the open-file limit (%d) allows: %d per worker",
        wanted,
        open_files,
        allowed,
    )
    return allowed


def _stopped(reason: str) -> int:
    """Says why ``serve`` stops before it served, and gives its exit status."""
    print(f"omnistock: {reason}", file=sys.stderr)
    return 1


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _redacted(url: str | None) -> str:
    """A Redis URL fit for a log: its password (in the address or as ``?password=``) masked."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        masked = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
        url = url.replace(parts.netloc, masked, 1)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        hidden = [(name, "***" if name == "password" else value) for name, value in query]
        url = url.partition("?")[0] + "?" + urllib.parse.urlencode(hidden, safe="*")
    return url


def _seed_demo(settings: Settings, host: str, port: int) -> None:
    from omnistock.runtime.demo_cli import seed_on_start

    # The ledger the workers will use: the embedded Valkey just started, or the external one.
    url = os.environ["OMNISTOCK_REDIS_URL"]
    asyncio.run(seed_on_start(msgspec.structs.replace(settings, redis_url=url), host, port))


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":
        from omnistock.runtime import bench_cli

        return bench_cli.run(extra)
    # The bulk tools print their own reports; the library's progress logs would bury them.
    quiet = args.command in ("seed", "import", "keys")
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Alembic narrates its plugins and migration context at INFO in every process and worker,
    # burying the start-up report; its warnings and errors still show.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"omnistock: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings, args.host, args.port, max(1, args.workers), demo=args.demo)
    if args.command in ("seed", "import", "keys"):
        from omnistock.runtime import demo_cli, importer, keys_cli

        module = {"seed": demo_cli, "import": importer, "keys": keys_cli}[args.command]
        return module.run(args, settings)
    from omnistock.runtime import tools

    if args.command == "projector":
        return asyncio.run(tools.projector(settings))
    if args.command == "reconcile":
        return asyncio.run(tools.reconcile(settings))
    if args.command == "rebuild":
        return asyncio.run(tools.rebuild(settings, force=args.force))
    if args.command == "prune-functions":
        return asyncio.run(tools.prune_functions(settings, dry_run=args.dry_run))
    return 2


if __name__ == "__main__":
    sys.exit(main())
