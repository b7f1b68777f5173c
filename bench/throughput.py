"""Throughput of the engine against the sandbox with latency, in checks per minute.

Modes, measured in one run on the same machine (compare ratios, not absolute numbers):
  (a) naive: a sequential script that launches a browser per check;
  (b) ceiling: the same flow functions called directly from K concurrent processes, each with
      its own browser — no queue, no database;
  (c) `constancias run` embedded (K processes, SQLite, the dispatcher);
  (d) K Celery worker processes on Redis (`constancias worker -c K` + `submit`).
Peak memory is the resident set of the whole process tree (Python and Chromium). (b) leaves out
its start (K processes, K browsers, warmed first); (b0) is the same run with it, the fair
yardstick for (c), which cannot leave out its own. (d) is warmed by a batch of K checks first.

    .venv/bin/python bench/throughput.py [--people 24] [--k 8] [--latency-ms 300] [--modes abcd]
    .venv/bin/python bench/throughput.py --growth 500     # memory growth over 500 checks
    .venv/bin/python bench/throughput.py --email-delay-s 0,30,120 --people 80 --page-people 6 \
        --k 3 --quiet
        # IMSS checks with the sandbox's mail that late: the two-step design (the wait is a row
        # and a mailbox watch) beside today's (the check waits in its page), same run, each
        # design's rate against its own instant-mail batch and the targets; then the memory 200
        # checks waiting for mail cost beyond the K running ones. A batch pays the delay once
        # (its first verdict comes S late): the whole-batch target at 120 s is about a batch
        # with some 280 s or more of instant-mail work (--people); today's design does about
        # one check a minute at 120 s, so it gets a smaller batch of its own (--page-people).
    .venv/bin/python bench/throughput.py --modes c --people 20 \
        --browsers /usr/bin/chromium-headless-shell,/usr/bin/chromium   # one browser vs another
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Nothing heavy at the top: the engine's children import this file again as their main
# module (multiprocessing does that with a script), and what a bench imports there would be
# charged to (c) — the `constancias` command the children of a real run import is tiny.


class TreeMemory:
    """Samples the RSS of this process and all its descendants; keeps the peak."""

    def __init__(self, root_pids: list[int] | None = None) -> None:
        self.roots = root_pids or [os.getpid()]
        self.peak = 0
        #: (pid, start time) -> CPU seconds last seen: the tree's CPU, processes gone included
        #: (up to their last sample).
        self.cpu: dict[tuple[int, float], float] = {}
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        total = 0
        for pid in self.roots:
            try:
                p = psutil.Process(pid)
                procs = [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for q in procs:
                try:
                    total += q.memory_info().rss
                    times = q.cpu_times()
                    self.cpu[(q.pid, q.create_time())] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        return total

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.current()
            self.samples.append(rss)
            self.peak = max(self.peak, rss)
            time.sleep(1.0)

    def __enter__(self) -> TreeMemory:
        self.current()
        self._base = dict(self.cpu)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.current()
        # CPU spent inside the block: what the tree had already used before it is left out.
        _LAST_CPU[0] = sum(v - self._base.get(k, 0.0) for k, v in self.cpu.items())


#: CPU core-seconds of the process tree in the last TreeMemory block (the mode just run).
_LAST_CPU = [0.0]


def _settings(sb, tmp: Path, **extra):
    from worker.core.settings import load_settings
    from worker.interfaces.commands import sandbox_settings

    base = load_settings(data_dir=tmp / "data", rate_limit_imss=100000, rate_limit_issste=100000,
                         max_concurrency_imss=64, max_concurrency_issste=64, **extra)
    return sandbox_settings(base, sb)


def _one_check(args: tuple) -> str:
    """Run one flow with this process's browser (ceiling and naive modes)."""
    settings_data, curp, portal, work, fresh_browser = args
    from flows.base import Person
    from flows.browser import launch, shared_browser
    from flows.captcha import make_solver
    from flows.mailbox import open_mailbox
    from flows.runner import run_check
    from worker.core.settings import Settings

    settings = Settings(**settings_data)
    import structlog

    log = structlog.get_logger("bench")
    if fresh_browser:
        pw, browser = launch(settings.browser_executable)
    else:
        browser = shared_browser(settings.browser_executable)
    try:
        out = run_check(browser, portal, Person(curp=curp), settings, Path(work) / curp,
                        captcha=make_solver(settings),
                        mailbox=open_mailbox(settings.effective_mailbox_url), log=log)
        return out.outcome.status.value
    except Exception as exc:  # noqa: BLE001 - a bench counts failures, it does not stop
        return type(exc).__name__
    finally:
        if fresh_browser:
            browser.close()
            pw.stop()


def _jobs(curps: list[str]) -> list[tuple[str, str]]:
    return [(c, p) for c in curps for p in ("imss", "issste")]


def mode_naive(sb, curps, k, tmp) -> tuple[float, int]:
    settings = _settings(sb, tmp)
    data = settings.model_dump(mode="json")
    with TreeMemory() as mem:
        t0 = time.monotonic()
        for curp, portal in _jobs(curps):
            _one_check((data, curp, portal, str(tmp / "naive"), True))
        return time.monotonic() - t0, mem.peak


def mode_ceiling(sb, curps, k, tmp) -> tuple[float, int]:
    import multiprocessing as mp

    settings = _settings(sb, tmp)
    data = settings.model_dump(mode="json")
    jobs = [(data, c, p, str(tmp / "ceiling"), False) for c, p in _jobs(curps)]
    start = time.monotonic()
    with TreeMemory() as mem, ProcessPoolExecutor(k, mp_context=mp.get_context("spawn"),
                                                  initializer=_warm, initargs=(data,)) as pool:
        # Warm the browsers so that the ceiling measures checks, like the others' steady state;
        # the start (K processes, K browsers) is kept aside for the cold ceiling (b0). K tasks
        # submitted at once make the pool start all K processes; each warms in its initializer.
        list(pool.map(abs, range(k)))
        t0 = time.monotonic()
        list(pool.map(_one_check, jobs))
        end = time.monotonic()
        _STARTUP["b"] = t0 - start
        return end - t0, mem.peak


#: Seconds a mode spent starting up before its timed part (only the ceiling reports it).
_STARTUP: dict[str, float] = {}


def _warm(data: dict) -> None:
    """A ceiling pool process's start: its logs at the configured level, its browser."""
    from flows.browser import shared_browser
    from worker.core.logs import configure_logging

    configure_logging(data["log_format"], data["log_level"])

    shared_browser(data.get("browser_executable"))


def mode_embedded(sb, curps, k, tmp) -> tuple[float, int]:
    from tests.people import write_sheet
    from worker.engine.embedded import run_embedded
    from worker.services.batches import open_storage, prepare_batch

    settings = _settings(sb, tmp, concurrency=k)
    storage = open_storage(settings)
    sheet = write_sheet(tmp / "emb.xlsx", curps)
    batch_id, _ = prepare_batch(settings, storage, sheet, ["imss", "issste"])
    with TreeMemory() as mem:
        t0 = time.monotonic()
        run_embedded(settings, storage, batch_id, concurrency=k)
        return time.monotonic() - t0, mem.peak


def mode_celery(sb, curps, k, tmp) -> tuple[float, int]:
    from tests.people import synthetic_curps, write_sheet
    from tests.redis_server import RedisServer

    redis = RedisServer(tmp / "redis")
    redis.start()
    env = {kk: v for kk, v in os.environ.items() if not kk.startswith("CONSTANCIAS_")}
    env.update({"CONSTANCIAS_BROKER_URL": redis.url, "CONSTANCIAS_DATA_DIR": str(tmp / "cdata"),
                "CONSTANCIAS_IMSS_URL": sb.imss_url, "CONSTANCIAS_ISSSTE_URL": sb.issste_url,
                "CONSTANCIAS_MAILBOX_URL": sb.mailbox_url, "CONSTANCIAS_LOG_LEVEL": "warning",
                "CONSTANCIAS_RATE_LIMIT_IMSS": "100000", "CONSTANCIAS_RATE_LIMIT_ISSSTE": "100000",
                "CONSTANCIAS_MAX_CONCURRENCY_IMSS": "64",
                "CONSTANCIAS_MAX_CONCURRENCY_ISSSTE": "64"})
    cli = [sys.executable, "-m", "worker.interfaces.cli"]
    worker = subprocess.Popen([*cli, "worker", "-c", str(k)], env=env, cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Warm up, excluded from the time: a batch of K ISSSTE checks, so that (as in the
        # ceiling) every pool process has imported everything and launched its browser.
        warm = write_sheet(tmp / "warm.xlsx", synthetic_curps(k, seed=999))
        bid = subprocess.run([*cli, "submit", str(warm), "--portals", "issste"], env=env, cwd=tmp,
                             capture_output=True, text=True, check=True).stdout.split()[-1]
        _wait(cli, env, tmp, bid)
        sheet = write_sheet(tmp / "cel.xlsx", curps)
        with TreeMemory([worker.pid]) as mem:
            t0 = time.monotonic()
            bid = subprocess.run([*cli, "submit", str(sheet)], env=env, cwd=tmp,
                                 capture_output=True, text=True, check=True).stdout.split()[-1]
            _wait(cli, env, tmp, bid)
            return time.monotonic() - t0, mem.peak
    finally:
        worker.terminate()
        worker.wait(30)
        redis.stop()


def _wait(cli, env, tmp, bid) -> None:
    # Poll the database directly: a `constancias status` process per poll would steal CPU
    # from the workers on a small machine and bias the measurement against Celery.
    from worker.storage.repository import Storage

    storage = Storage(f"sqlite:///{Path(env['CONSTANCIAS_DATA_DIR']).resolve() / 'constancias.db'}")
    while True:
        batch = storage.get_batch(bid)
        if batch is not None and batch.state == "done":
            return
        time.sleep(0.3)


def growth(sb, n_checks: int, k: int, tmp: Path) -> None:
    """RSS of the embedded engine's process tree early in a run vs late in it."""
    from tests.people import synthetic_curps, write_sheet
    from worker.engine.embedded import run_embedded
    from worker.services.batches import open_storage, prepare_batch

    settings = _settings(sb, tmp, concurrency=k)
    storage = open_storage(settings)
    curps = synthetic_curps(n_checks // 2, seed=4242)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp / "g.xlsx", curps),
                                ["imss", "issste"])
    samples: list[tuple[int, int]] = []
    mem = TreeMemory()

    def progress(p) -> None:
        done = sum(v["done"] for v in p.per_portal.values())
        if done < n_checks:  # the last call comes after the pool has shut down
            samples.append((done, mem.current()))

    run_embedded(settings, storage, batch_id, concurrency=k, on_progress=progress)

    def mean_between(lo: float, hi: float) -> float:
        picked = [rss for done, rss in samples if lo * n_checks <= done < hi * n_checks]
        return sum(picked) / max(1, len(picked))

    early, late = mean_between(0.10, 0.25), mean_between(0.75, 0.95)
    print(f"memory (RSS of the process tree, Python + Chromium) over {n_checks} checks: "
          f"at 10-25 %: {early / 2**20:.0f} MiB, at 75-95 %: {late / 2**20:.0f} MiB, "
          f"growth {100 * (late - early) / max(early, 1):+.1f} % (target ≤ 10 %)")
    # A batch runs its IMSS checks first (the registry's run order), so the two windows above
    # hold different work; the same work, early and late, within each half:
    for portal, (a, b), (c, d) in (("IMSS", (0.05, 0.15), (0.35, 0.45)),
                                   ("ISSSTE", (0.55, 0.65), (0.85, 0.95))):
        first, last = mean_between(a, b), mean_between(c, d)
        print(f"  {portal} half: at {a:.0%}-{b:.0%}: {first / 2**20:.0f} MiB, at {c:.0%}-{d:.0%}: "
              f"{last / 2**20:.0f} MiB, growth {100 * (last - first) / max(first, 1):+.1f} %")


def mode_mail(sb, curps, k, tmp, design: str) -> tuple[float, float, int, list[float]]:
    """One embedded IMSS-only batch with ``IMSS_MAIL_WAIT=design``: (seconds, seconds from the
    first verdict to the last, peak RSS, the verdicts' times)."""
    from tests.people import write_sheet
    from worker.engine.embedded import run_embedded
    from worker.services.batches import open_storage, prepare_batch

    settings = _settings(sb, tmp, concurrency=k, imss_mail_wait=design, email_timeout_s=900,
                         mailbox_poll_s=0.25)
    storage = open_storage(settings)
    batch_id, _ = prepare_batch(settings, storage, write_sheet(tmp / "m.xlsx", curps), ["imss"])
    with TreeMemory() as mem:
        t0 = time.monotonic()
        run_embedded(settings, storage, batch_id, concurrency=k)
        secs = time.monotonic() - t0
    ends = sorted(c.finished_at.timestamp() for c in storage.checks(batch_id) if c.finished_at)
    bad = [c.status for c in storage.checks(batch_id)
           if c.status not in ("not_entitled", "entitled", "curp_not_found",
                               "data_inconsistent")]
    if bad:
        print(f"  warning: {len(bad)} check(s) ended {sorted(set(bad))}", file=sys.stderr)
    steady = ends[-1] - ends[0] if len(ends) > 1 else secs
    return secs, steady, mem.peak, ends


def _sample_rss(stop: threading.Event, into: list[int]) -> None:
    me = psutil.Process()
    while not stop.wait(0.5):
        into.append(me.memory_info().rss)


#: Targets of issue 22 (benchmark, not timed tests): IMSS throughput with mail this late
#: (seconds) at least this share of the throughput with instant mail, same design, same run…
MAIL_TARGETS = {30.0: 0.8, 120.0: 0.7}
#: …and 200 checks waiting for mail cost at most this beyond the K running ones (bytes).
WAITING_TARGET_BYTES = 50 * 10**6


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def waiting_memory(sb, curps, k, tmp, n_waiting: int) -> int:
    """RSS of an embedded run of K running IMSS checks, alone and with ``n_waiting`` more
    checks waiting for mail (stored waits, as step 1 leaves them, of another batch the same
    watcher serves): what waiting checks cost beyond the running ones."""
    from datetime import UTC, datetime, timedelta

    from tests.people import synthetic_curps, write_sheet
    from worker.engine.embedded import run_embedded
    from worker.services.batches import open_storage, prepare_batch
    from worker.storage.waiting import Waits

    rows = []
    for label, extra in (("K running, no check waiting", 0),
                         (f"K running + {n_waiting} waiting for mail", n_waiting)):
        work = tmp / f"w{extra}"
        sb.reset()  # the same people in both runs: each within its daily queries
        settings = _settings(sb, work, concurrency=k, mailbox_poll_s=0.25)
        storage = open_storage(settings)
        if extra:
            others = synthetic_curps(extra, seed=777)
            waiting_id, _ = prepare_batch(settings, storage,
                                          write_sheet(work / "waiting.xlsx", others), ["imss"])
            waits = Waits(storage)
            sent = datetime.now(UTC)
            for check in storage.checks(waiting_id):
                storage.start_check(check.id, "bench")
                waits.start(check.id, address=settings.email_for(check.curp), sent_at=sent,
                            attempt=0, expires_at=sent + timedelta(hours=2))
            assert storage.progress(waiting_id)["imss"]["waiting"] == extra
        batch_id, _ = prepare_batch(settings, storage, write_sheet(work / "run.xlsx", curps),
                                    ["imss"])
        parent: list[int] = []
        with TreeMemory() as mem:
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_rss, args=(stop, parent), daemon=True)
            sampler.start()
            run_embedded(settings, storage, batch_id, concurrency=k)
            stop.set()
            sampler.join()
        tree = sorted(mem.samples) or [0]
        rows.append((label, mem.peak, tree[len(tree) // 2], max(parent) if parent else 0))
    print(f"\nmemory of checks waiting for mail, K={k}, {len(curps)} IMSS checks run "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)\n")
    print("| run | peak RSS of the tree (MiB) | median RSS of the tree (MiB) "
          "| peak RSS of the dispatcher + watcher (MiB) |")
    print("|---|---:|---:|---:|")
    for label, peak, median, parent_peak in rows:
        print(f"| {label} | {peak / 2**20:.0f} | {median / 2**20:.0f} "
              f"| {parent_peak / 2**20:.0f} |")
    # The waits live in the dispatcher (its watcher) and the database only: the K browsers'
    # own swings (hundreds of MB between two runs) are no part of their cost.
    cost = rows[1][3] - rows[0][3]
    print(f"{n_waiting} waiting checks: dispatcher + watcher "
          f"{cost / 2**20:+.0f} MiB, tree peak "
          f"{(rows[1][1] - rows[0][1]) / 2**20:+.0f} MiB, tree median "
          f"{(rows[1][2] - rows[0][2]) / 2**20:+.0f} MiB "
          f"(target ≤ {WAITING_TARGET_BYTES // 10**6} MB beyond the K running ones: "
          f"{_verdict(cost <= WAITING_TARGET_BYTES)})")
    return cost


def mail_table(sb, args, tmp: Path) -> None:
    """``--email-delay-s``: IMSS throughput at each mail delay, both designs, one run."""
    from tests.people import synthetic_curps

    curps = synthetic_curps(args.people, seed=1234)
    delays = [float(d) for d in args.email_delay_s.split(",") if d.strip()]
    designs = [d for d in args.designs.split(",") if d]
    # Each design its own batch size (the same people, the first N): see the module docstring.
    people = {d: curps[: args.page_people] if d == "page" and args.page_people else curps
              for d in designs}
    # Untimed: the fork server starts and preloads once per process; the first measured run
    # must not pay for it alone.
    if designs:
        sb.reset()
        mode_mail(sb, synthetic_curps(args.k, seed=99), args.k, tmp / "warm", designs[0])
    rows = []
    for delay in delays:
        for design in designs:
            sb.reset()
            sb.set_faults("imss", latency_ms=args.latency_ms, email_delay_s=delay)
            batch = people[design]
            secs, steady, peak, ends = mode_mail(sb, batch, args.k, tmp / f"{design}-{delay:g}",
                                                 design)
            rate = len(batch) / secs * 60
            steady_rate = (len(ends) - 1) / steady * 60 if steady > 0 else 0.0
            cpu = _LAST_CPU[0] / len(batch)
            rows.append((delay, design, len(batch), secs, rate, steady_rate, peak, cpu))
            print(f"  S={delay:g} {design}: {rate:.1f} checks/min, {steady_rate:.1f} steady",
                  file=sys.stderr)
    if not rows:  # --designs "": only the memory of waiting checks
        waiting_memory(sb, curps[: max(args.k * 2, 4)], args.k, tmp / "waiting", args.waiting)
        return
    print(f"\nIMSS only, embedded, K={args.k}, latency {args.latency_ms} ms per response, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n")
    print("| mail delay S (s) | design | checks | seconds | checks/min (whole batch) "
          "| checks/min (first to last verdict) | CPU core-s per check | peak RSS (MiB) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    names = {"watch": "two steps (wait = row + watcher)", "page": "today's: waits in its page"}
    for delay, design, n, secs, rate, steady_rate, peak, cpu in rows:
        print(f"| {delay:g} | {names.get(design, design)} | {n} | {secs:.1f} | {rate:.1f} "
              f"| {steady_rate:.1f} | {cpu:.2f} | {peak / 2**20:.0f} |")
    print("\nRatios to instant mail (S = 0), same design, same run; the targets are on the "
          "whole batch:")
    base = {design: (r, sr) for d, design, _, _, r, sr, _, _ in rows if d == 0}
    for delay, design, n, _, rate, steady_rate, _, _ in rows:
        if not delay or design not in base:
            continue
        whole = rate / max(base[design][0], 1e-9)
        line = (f"S={delay:g} {design} ({n} checks): {whole:.2f}× whole batch, "
                f"{steady_rate / max(base[design][1], 1e-9):.2f}× first to last verdict")
        if (target := MAIL_TARGETS.get(delay)) is not None:
            line += f"  (target ≥ {target}: {_verdict(whole >= target)})"
        print(line)
    if args.waiting:
        waiting_memory(sb, curps[: max(args.k * 2, 4)], args.k, tmp / "waiting", args.waiting)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=24)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--quiet", action="store_true", help="warnings only in the logs")
    ap.add_argument("--latency-ms", type=int, default=300)
    ap.add_argument("--modes", default="abcd")
    ap.add_argument("--naive-people", type=int, default=20,
                    help="the naive mode is slow; its rate varies with the captchas drawn")
    ap.add_argument("--growth", type=int, default=0)
    ap.add_argument("--email-delay-s", default="",
                    help="comma-separated IMSS mail delays (the sandbox's email_delay_s): "
                         "IMSS throughput per delay and design instead of the modes")
    ap.add_argument("--page-people", type=int, default=0,
                    help="with --email-delay-s: the batch of today's design (IMSS_MAIL_WAIT="
                         "page), the first N of --people (it does about a check a minute at "
                         "120 s); 0: --people")
    ap.add_argument("--designs", default="watch,page",
                    help="IMSS_MAIL_WAIT values compared with --email-delay-s")
    ap.add_argument("--waiting", type=int, default=200,
                    help="with --email-delay-s: the memory of this many checks waiting")
    ap.add_argument("--browsers", default="",
                    help="comma-separated Chromium executables: the modes run once with each")
    args = ap.parse_args()
    if args.quiet:
        from worker.core.logs import configure_logging

        # Every mode's processes alike (the Celery workers always log warnings only).
        os.environ["CONSTANCIAS_LOG_LEVEL"] = "warning"
        configure_logging("console", "warning")
    from fixtures.sandbox import start_sandbox

    with tempfile.TemporaryDirectory() as td, start_sandbox(maildir=Path(td) / "mail") as sb:
        tmp = Path(td)
        for portal in ("imss", "issste"):
            sb.set_faults(portal, latency_ms=args.latency_ms)
        if args.growth:
            growth(sb, args.growth, args.k, tmp)
            return
        if args.email_delay_s:
            mail_table(sb, args, tmp)
            return
        from tests.people import synthetic_curps

        curps = synthetic_curps(args.people, seed=1234)
        modes = {"a": ("naive sequential, browser per check", mode_naive),
                 "b": (f"ceiling: flows in {args.k} processes", mode_ceiling),
                 "c": (f"constancias run (embedded, K={args.k})", mode_embedded),
                 "d": (f"Celery on Redis, worker -c {args.k}", mode_celery)}
        rows = []
        browsers = [b for b in args.browsers.split(",") if b] or [None]
        for browser in browsers:
            if browser:
                os.environ["CONSTANCIAS_BROWSER_EXECUTABLE"] = browser
            for key in args.modes:
                label, fn = modes[key]
                if browser:
                    label += f", {os.path.basename(browser)}"
                people = curps[: args.naive_people] if key == "a" else curps
                sb.reset()
                for portal in ("imss", "issste"):
                    sb.set_faults(portal, latency_ms=args.latency_ms)
                secs, peak = fn(sb, people, args.k, tmp / f"{key}-{len(rows)}")
                rate = len(people) * 2 / secs * 60
                cpu = _LAST_CPU[0] / (len(people) * 2)
                rows.append((key, label, len(people) * 2, secs, rate, peak, cpu))
                print(f"  {key}: {rate:.1f} checks/min", file=sys.stderr)
                if key in _STARTUP:
                    # The embedded run (c) cannot leave out its own start (spawning K
                    # processes, launching K browsers): the ceiling timed the same way.
                    cold = secs + _STARTUP[key]
                    rows.append(("b0", "ceiling, its start included (as (c) includes its own)",
                                 len(people) * 2, cold, len(people) * 2 / cold * 60, peak, cpu))
        rates = {r[0]: r[4] for r in rows}
        print(f"\nlatency {args.latency_ms} ms per response, K={args.k}, {os.cpu_count()} cores\n")
        print("| mode | checks | seconds | checks/min | CPU core-s per check | peak RSS (MiB) |")
        print("|---|---:|---:|---:|---:|---:|")
        for key, label, n, secs, rate, peak, cpu in rows:
            print(f"| ({key}) {label} | {n} | {secs:.1f} | {rate:.1f} | {cpu:.2f} "
                  f"| {peak / 2**20:.0f} |")
        for num, den, target in (("c", "b", 0.85), ("c", "b0", 0.85), ("d", "b", 0.85),
                                 ("c", "a", 6)):
            if num in rates and den in rates:
                print(f"({num})/({den}) = {rates[num] / rates[den]:.2f}  (target ≥ {target})")


if __name__ == "__main__":
    main()
