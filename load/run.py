"""Runs a load test end to end and judges it: `python -m load.run` (what `make load` calls).

1. A target: by default an `omnistock serve` on the embedded default that this run starts
   (fresh data directory, free port, generated keys; `--workers`), or `--url` with keys from
   options or LOAD_ADMIN_KEY / LOAD_OMS_KEY / LOAD_STOREFRONT_KEY.
2. The seed (`load.seed`, admin key), unless `--no-seed` (then `--manifest` of an earlier seed).
3. Every position of the seeded SKUs, read before the load (`before.json`); then a wait until
   the service's journal has caught up with the seed.
4. locust, headless, as a subprocess: `-u/-r/-t`, `--shape`, the CSV (`load_stats.csv`, ...) and
   HTML report into the results directory (default `load/results/<UTC time>/`), its log in
   `locust.log`; anything after `--` goes to locust as is (e.g. `-- --oms-weight 5`). With
   `--expect-workers N` locust runs as a master and waits for N workers started elsewhere.
5. The stock checks (`load.check`): the changes the load left unacknowledged are settled, every
   position is read again; nothing oversold, every unit accounted for. In a distributed run
   whose workers' change logs are not in the results directory, they are left for
   `python -m load.check` once the logs are copied there.
6. The SLO verdict (`load.slo`, `load/slo.toml` or `--slo-file`, `--slo KEY=VALUE` overrides):
   a table of p50/p99 per endpoint, the error rate, the shortages; PASS or FAIL.

Exit status: 0 when the SLOs hold and the checks pass, 1 when either fails (the output says
why), 2 when the run itself could not be made (server, seed, locust).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from load import check, manifest, seed, slo
from load.http import Api, ApiError
from load.server import Keys, Server

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
RESULTS = HERE / "results"
LOCUST_GRACE_S = 120
STOP_TIMEOUT_S = 5
SETTLE_TIMEOUT_S = 120
NODE_PROPAGATION_S = 1.5  # the service refreshes each worker's node cache every second
WORKERS_WAIT_S = 300


class RunError(RuntimeError):
    """The run could not be made (as opposed to a run whose verdict is FAIL)."""


def parse_duration(text: str) -> int:
    """'60s', '2m', '1h30m' or '45' -> seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"a duration like 60s, 2m or 1h30m, not {text!r}")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    p = argparse.ArgumentParser(prog="python -m load.run", description=__doc__.split("\n")[0])
    target = p.add_argument_group("target")
    target.add_argument("--url", help="a running service (default: start one here)")
    for role in ("admin", "oms", "storefront"):
        env = f"LOAD_{role.upper()}_KEY"
        target.add_argument(
            f"--{role}-key", default=os.environ.get(env), help=f"with --url (default ${env})"
        )
    target.add_argument(
        "--workers", type=int, default=2, help="worker processes of the started server (2)"
    )
    load = p.add_argument_group("load")
    load.add_argument("--duration", type=parse_duration, default=60, help="default 60s")
    load.add_argument("--users", type=int, default=50, help="default 50")
    load.add_argument("--spawn-rate", type=float, default=10.0, help="users/s (default 10)")
    load.add_argument("--shape", choices=("steady", "flash"), default="steady")
    load.add_argument(
        "--expect-workers",
        type=int,
        default=0,
        help="run locust as a master and wait for this many workers (started elsewhere)",
    )
    data = p.add_argument_group("seed")
    data.add_argument("--no-seed", action="store_true", help="the target is already seeded")
    data.add_argument("--manifest", type=Path, help="with --no-seed: the earlier manifest")
    seed.add_catalogue_arguments(data)
    data.add_argument(
        "--stock-via",
        choices=("auto", "put", "receipts"),
        default="auto",
        help="auto: receipts on a server started here (fast), put on --url",
    )
    judge = p.add_argument_group("verdict")
    judge.add_argument(
        "--slo-file", type=Path, default=slo.DEFAULT_SLO_FILE, help="default load/slo.toml"
    )
    judge.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override one SLO: error_rate=0.005, default=300, "POST /v1/orders=300" (ms)',
    )
    judge.add_argument("--no-check", action="store_true", help="skip the stock checks")
    judge.add_argument("--results", type=Path, help="default load/results/<UTC time>/")
    args = p.parse_args(argv)
    if args.no_seed and not args.manifest:
        p.error("--no-seed needs --manifest (written by an earlier seed)")
    if args.url:
        missing = [k for k in ("oms_key", "storefront_key") if not getattr(args, k)]
        if not args.no_seed and not args.admin_key:
            missing.insert(0, "admin_key")
        if missing:
            p.error("with --url, give " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return args, extra


def say(text: str) -> None:
    print(text, flush=True)


def wait_settled(
    api: Api, seeded_at: float | None, deadline_s: float = SETTLE_TIMEOUT_S
) -> tuple[float, int | None]:
    """Waits until the seed has settled: node changes reach every worker's catalog cache
    within a second (`NODE_PROPAGATION_S` after `seeded_at`, a `time.monotonic()`), and the
    service's journal has caught up with the seed's events (`/readyz` reports the projector's
    lag), so that the load is not measured against a backlog. Returns the seconds waited and
    the last lag seen (None: the service does not report one)."""
    started = time.monotonic()
    if seeded_at is not None:
        time.sleep(max(0.0, seeded_at + NODE_PROPAGATION_S - started))
    lag: int | None = None
    while time.monotonic() - started < deadline_s:
        try:
            answer = api.send("GET", "/readyz")
            lag = answer.json().get("details", {}).get("projector_lag_events")
        except (OSError, ValueError):
            lag = None
        if not lag:
            break
        time.sleep(0.5)
    return time.monotonic() - started, lag


def run_locust(
    args: argparse.Namespace, extra: list[str], url: str, keys: Keys, out: Path, manifest_path: Path
) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.duration}s",
        "--stop-timeout", str(STOP_TIMEOUT_S), "--shape", args.shape,
        "--csv", str(out / "load"), "--html", str(out / "report.html"), "--host", url,
    ]  # fmt: skip
    if args.expect_workers:
        command += [
            "--master", "--expect-workers", str(args.expect_workers),
            "--expect-workers-max-wait", str(WORKERS_WAIT_S),
        ]  # fmt: skip
    command += extra
    env = {
        **os.environ,
        "LOAD_MANIFEST": str(manifest_path),
        "LOAD_CHANGES_DIR": "" if args.no_check else str(out),
        "LOAD_OMS_KEY": keys.oms,
        "LOAD_STOREFRONT_KEY": keys.storefront,
    }
    log_path = out / "locust.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        grace = LOCUST_GRACE_S + (WORKERS_WAIT_S if args.expect_workers else 0)
        try:
            return proc.wait(timeout=args.duration + STOP_TIMEOUT_S + grace)
        except subprocess.TimeoutExpired:
            _end(proc)
            raise RunError(f"locust did not finish in time; see {log_path}") from None
        except BaseException:  # interrupted: locust runs in its own session, so end it here
            _end(proc)
            raise


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (locust writes its reports and exits), then SIGKILL to its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(args: argparse.Namespace, extra: list[str]) -> int:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.results or RESULTS / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        if args.url:
            url = args.url.rstrip("/")
            keys = Keys(args.admin_key or "", args.oms_key, args.storefront_key)
        else:
            server = Server(workers=args.workers, log_path=out / "server.log")
            say(f"starting omnistock serve --workers {args.workers} (log {server.log_path})")
            server.start()
            url, keys = server.url, server.keys
        say(f"target {url}; results in {out}")
        manifest_path = out / "manifest.json"
        seeded_at = None
        if args.no_seed:
            seeded = manifest.read(args.manifest)
            manifest.write(manifest_path, seeded)
        else:
            via = args.stock_via if args.stock_via != "auto" else "put" if args.url else "receipts"
            started = time.perf_counter()
            seeded = seed.seed(
                url,
                keys.admin,
                seed.catalogue_of(args),
                stock_via=via,
                role_keys={"oms": keys.oms, "storefront": keys.storefront},
            )
            seeded_at = time.monotonic()
            manifest.write(manifest_path, seeded)
            say(seed.summary(seeded, time.perf_counter() - started) + f" (stock via {via})")
        apis = check.apis_for(url, keys.oms, keys.storefront)
        if not args.no_check:
            check.snapshot(apis, seeded.skus, out)
        waited, lag = wait_settled(apis["oms"], seeded_at)
        if waited >= 2 or lag:
            say(f"waited {waited:.0f} s for the journal to catch up with the seed (lag {lag})")
        say(
            f"locust: {args.users} users at {args.spawn_rate:g}/s for {args.duration} s, "
            f"shape {args.shape} (log {out / 'locust.log'})"
        )
        code = run_locust(args, extra, url, keys, out, manifest_path)
        stats = out / "load_stats.csv"
        if not stats.exists():
            raise RunError(f"locust exited with {code} and wrote no {stats.name}; see locust.log")
        verdict = slo.judge(
            *slo.parse_stats(stats.read_text()), slo.load_slo(args.slo_file, args.slo)
        )
        lines = ["", slo.render(verdict), ""]
        stock_ok, pending = True, False
        found = len(check.change_files(out))
        if args.no_check:
            lines.append("stock checks: skipped (--no-check)")
        elif args.expect_workers and found < args.expect_workers:
            pending = True
            lines.append(
                f"stock checks: pending, {found} of {args.expect_workers} workers' change logs "
                f"are in {out}; copy the others there, then: python -m load.check {out} "
                f"--url {url}"
            )
        else:
            stock_ok, stock_lines = check.run_checks(apis, out)
            lines += stock_lines
        passed = verdict.ok and stock_ok
        reasons = []
        if not verdict.latency_ok:
            reasons.append("p99 over its SLO: " + ", ".join(
                j.row.label for j in verdict.rows if not j.ok
            ))  # fmt: skip
        if not verdict.error_rate_ok:
            reasons.append("error rate over its SLO")
        if not stock_ok:
            reasons.append("stock check failed")
        if passed and pending:
            reasons.append("stock checks pending")
        lines.append(
            f"OVERALL: {'PASS' if passed else 'FAIL'}"
            + (f" ({'; '.join(reasons)})" if reasons else "")
        )
        lines.append(f"report: {out / 'report.html'}, CSV: {out / 'load_stats.csv'}")
        text = "\n".join(lines)
        say(text)
        (out / "verdict.txt").write_text(text.lstrip("\n") + "\n", encoding="utf-8")
        return 0 if passed else 1
    except (RunError, ApiError, OSError, RuntimeError) as exc:
        say(f"load run failed: {exc}")
        return 2
    finally:
        if server is not None:
            code = server.stop()
            say(f"server stopped (exit {code})")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    # SIGTERM (a CI job cancelled) unwinds like Ctrl-C: locust and the server are stopped.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return run(args, extra)
    except KeyboardInterrupt:
        say("load run interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
