#!/usr/bin/env python
"""Webhooks through the queue on PostgreSQL + Redis: acknowledged fast, processed once.

    python bench/bench_queue.py [--events 3000] [--duplicates 300] [--senders 32]
                                [--lag-events 600] [--lag-rate 100] [--outage-events 2000]
                                [--webhook-workers 4] [--queue-workers 2] [--redis-port 6390]
                                [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

A throw-away PostgreSQL database (``bench_queue``) with pending orders over 50 buyers, a Redis of
its own (``redis-server --port 6390 --save ''``, started and stopped here: it holds the queue
and the shared cache), the store under gunicorn (``-w 4`` sync workers), the queue's workers (2 x ``flask worker
--workers 1``) and a mail catcher (``flask mail-catcher``: the receipts the events owe).
Signed ``payment_intent.succeeded`` events are POSTed by concurrent senders with the helpers of
bench_buying.py. Four phases, then the mail:

1. *acknowledge*: after ``--warmup`` deliveries (each gunicorn worker's first requests import
   modules and open connections; not timed), the burst (distinct events plus exact
   re-deliveries, shuffled) with no queue worker running: every delivery verified, stored and
   queued, answered 200. Target >= 1,000 deliveries/s.
2. *process*: the queue's workers start and drain the backlog; events/s from the first event
   processed to the last (and from the workers' start). Target >= 300 events/s with 2 workers.
   Then exactly-once: every order paid once, one ledger entry each, balances equal the ledger,
   every event stored once and processed.
3. *lag*: with the workers running, new events sent at a steady rate; webhook lag per event =
   processed_at minus the moment its delivery was sent (Stripe's ``created`` has 1 s steps);
   p50 / p99 / max printed.
4. *Redis outage*: another burst, Redis killed (SIGKILL; nothing persisted) when half of it is
   sent and started again when it is all sent: every delivery still answered 200 (stored; the
   queue's wake-up lost), and all processed once Redis is back (the events queued before the
   kill are gone with Redis: the workers' periodic sweeper finds them within a minute).
5. *mail*: every paid order's receipt arrives at the catcher, once (the workers send them after
   the events: their tasks have a lower priority).

Exits non-zero when a target or a check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_buying import (  # noqa: E402
    WEBHOOK_SECRET,
    check_exactly_once,
    make_buyers,
    make_orders,
    post_all,
    signed,
    store_app,
    succeeded_event,
    throwaway_postgres,
)
from bench.bench_catalog import (  # noqa: E402
    BIN,
    bench_env,
    free_port,
    gunicorn,
    seed_store,
    server_cpu_seconds,
    stop,
    wait_until_up,
)

BUYERS = 50


# --- the pieces: Redis, the web server, the queue's workers, the books ---------------------------


class RedisServer:
    """A redis-server of the bench's own (no persistence), which it may kill and start again."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


WORKER_LOG = Path(tempfile.gettempdir()) / "bench_queue_worker.log"


class QueueWorkers:
    """``processes`` x ``flask worker --workers <threads>`` (the first also runs Huey's scheduler:
    the periodic sweeper). Their log goes to :data:`WORKER_LOG` (the outage makes it loud)."""

    def __init__(self, env: dict, processes: int, threads: int):
        self.procs: list[subprocess.Popen] = []
        with WORKER_LOG.open("w") as log:
            for n in range(processes):
                self.procs.append(
                    subprocess.Popen(
                        [str(BIN / "flask"), "worker", "--workers", str(threads), *(["--no-periodic"] if n else [])],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def cpu_seconds(self) -> float:
        return sum(server_cpu_seconds(proc.pid) for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)
        self.procs = []


class MailCatcher:
    """``flask mail-catcher`` on a free port writing into a temp dir: the receipts the events owe
    are really sent over SMTP, as in production, and counted."""

    def __init__(self, env: dict):
        self.dir = Path(tempfile.mkdtemp(prefix="bench_queue_mail_"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(BIN / "flask"), "mail-catcher", "--port", str(self.port), "--dir", str(self.dir), "--keep", "100000"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def settings(self) -> dict:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(self.port)}

    def kinds(self) -> dict[str, int]:
        """How many caught messages of each kind (``X-Storefront-Kind``)."""
        counts: dict[str, int] = {}
        for path in self.dir.glob("*.eml"):
            with path.open("rb") as f:
                head = f.read(4096).decode("utf-8", "replace")
            kind = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in head.splitlines()
                    if line.lower().startswith("x-storefront-kind:")
                ),
                "?",
            )
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def wait_for(self, kind: str, count: int, timeout: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.kinds().get(kind, 0) >= count:
                return time.monotonic() - started
            time.sleep(0.25)
        return None

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Books:
    """Reads the bench database directly (no app): what is stored and processed."""

    def __init__(self, database_url: str):
        from sqlalchemy import create_engine

        self.engine = create_engine(database_url)

    def counts(self) -> tuple[int, int]:
        """(events stored, events processed)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(processed_at) FROM stripe_events")).one()
        return int(row[0]), int(row[1])

    def processed_at(self, stripe_ids: list[str]) -> dict[str, float]:
        """Each event's processing moment (epoch seconds)."""
        from sqlalchemy import bindparam, text

        query = text(
            "SELECT stripe_id, extract(epoch FROM processed_at) FROM stripe_events "
            "WHERE stripe_id IN :ids AND processed_at IS NOT NULL"
        ).bindparams(bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            return {sid: float(at) for sid, at in conn.execute(query, {"ids": stripe_ids})}

    def processing_span(self) -> tuple[float, float]:
        """(first, last) processed_at among all events, epoch seconds."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            first, last = conn.execute(
                text(
                    "SELECT extract(epoch FROM min(processed_at)), extract(epoch FROM max(processed_at)) "
                    "FROM stripe_events"
                )
            ).one()
        return float(first), float(last)

    def wait_all_processed(self, stored: int, timeout: float) -> float | None:
        """Seconds until ``stored`` events are stored and processed (None: not within ``timeout``)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            total, done = self.counts()
            if total == stored and done == stored:
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    def close(self) -> None:
        self.engine.dispose()


def new_events(env: dict, count: int) -> list[bytes]:
    """``count`` new pending orders (over the same buyers) and their ``payment_intent.succeeded`` events."""
    with store_app(env):
        from sqlalchemy import select

        from storefront.extensions import db
        from storefront.models import User

        users = list(db.session.scalars(select(User).order_by(User.id)).all()) or make_buyers(BUYERS)
        orders = make_orders(users, count, status="pending")
        created = int(time.time())
        return [succeeded_event(order, created) for order in orders]


def deliveries(events: list[bytes], duplicates: int, seed: int) -> list[tuple[bytes, str]]:
    """The events plus ``duplicates`` exact re-deliveries, shuffled, each signed now."""
    rng = random.Random(seed)
    payloads = events + rng.sample(events, min(duplicates, len(events)))
    rng.shuffle(payloads)
    now = int(time.time())
    return [(body, signed(body, WEBHOOK_SECRET, now)) for body in payloads]


def event_id(body: bytes) -> str:
    import json

    return str(json.loads(body)["id"])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def paced(port: int, payloads: list[tuple[bytes, str]], rate: float, senders: int) -> tuple[dict[str, float], dict]:
    """Send ``payloads`` at ``rate`` per second; returns each event's send moment (epoch) and
    the answers' status counts."""
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    start = time.monotonic() + 0.2

    def send(index_and_delivery: tuple[int, tuple[bytes, str]]) -> None:
        index, delivery = index_and_delivery
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[event_id(delivery[0])] = time.time()
        _, counts = post_all(port, [delivery], 1)
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n

    with ThreadPoolExecutor(max_workers=senders) as pool:
        list(pool.map(send, enumerate(payloads)))
    return sent, statuses


def describe_workers(args) -> str:
    return f"{args.queue_processes} x flask worker --workers {args.queue_workers}"


def answered(statuses: dict) -> str:
    return ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))


# --- the phases ----------------------------------------------------------------------------------


def phase_acknowledge(port: int, server: subprocess.Popen, burst: list[tuple[bytes, str]], args) -> tuple[bool, dict]:
    cpu, client_cpu = server_cpu_seconds(server.pid), time.process_time()
    elapsed, statuses = post_all(port, burst, args.senders)
    cpu, client_cpu = server_cpu_seconds(server.pid) - cpu, time.process_time() - client_cpu
    rate = statuses.get(200, 0) / elapsed
    print(
        f"1. acknowledge: {len(burst)} deliveries ({args.events} events + {args.duplicates} re-deliveries) "
        f"in {elapsed:.2f} s: {rate:,.0f} deliveries/s acknowledged ({answered(statuses)}); "
        f"CPU per delivery: gunicorn {1000 * cpu / len(burst):.2f} ms, "
        f"the senders {1000 * client_cpu / len(burst):.2f} ms"
    )
    ok = statuses.get(200, 0) == len(burst) and rate >= 1000
    print("   target >= 1,000 deliveries/s, all 200 ->", "met" if ok else "NOT met")
    return ok, {"ack_per_s": rate}


def phase_process(env: dict, books: Books, stored: int, args) -> tuple[bool, dict, QueueWorkers]:
    total, done = books.counts()
    print(f"2. process: {total} events stored, {done} processed before the workers start")
    started, busy = time.monotonic(), machine_busy_seconds()
    workers = QueueWorkers(env, args.queue_processes, args.queue_workers)
    waited = books.wait_all_processed(stored, timeout=args.timeout)
    busy = machine_busy_seconds() - busy
    if waited is None:
        total, done = books.counts()
        print(f"   NOT all processed within {args.timeout:.0f} s: {done} of {total}")
        return False, {}, workers
    cpu = workers.cpu_seconds()
    first, last = books.processing_span()
    rate = (stored - 1) / max(last - first, 1e-6)
    print(
        f"   {stored} events processed by {describe_workers(args)}: {rate:,.0f} events/s "
        f"(first to last processed, {last - first:.2f} s); {stored / (time.monotonic() - started):,.0f}/s "
        f"counting the workers' start; worker CPU {1000 * cpu / stored:.2f} ms per event (start included)"
    )
    cores = os.cpu_count() or 1
    print(
        f"   the whole machine (workers, PostgreSQL, Redis, this script): {1000 * busy / stored:.2f} ms CPU per event "
        f"(start included) -> at most {cores * stored / busy:,.0f} events/s on its {cores} CPUs"
    )
    ok = rate >= 300
    print("   target >= 300 events/s ->", "met" if ok else "NOT met")
    return ok, {"process_per_s": rate}, workers


def machine_busy_seconds() -> float:
    """CPU seconds all the machine's CPUs have spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(n) for n in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def phase_lag(port: int, env: dict, books: Books, stored: int, args) -> tuple[bool, dict]:
    events = new_events(env, args.lag_events)
    payloads = deliveries(events, 0, seed=7)
    sent, statuses = paced(port, payloads, args.lag_rate, senders=16)
    waited = books.wait_all_processed(stored + args.lag_events, timeout=args.timeout)
    processed = books.processed_at(list(sent))
    lags = [processed[sid] - at for sid, at in sent.items() if sid in processed]
    if waited is None or not lags:
        print(f"3. lag: NOT all processed within {args.timeout:.0f} s ({answered(statuses)})")
        return False, {}
    p50, p99 = percentile(lags, 0.50), percentile(lags, 0.99)
    print(
        f"3. lag: {len(payloads)} events at {args.lag_rate:.0f}/s with the workers running ({answered(statuses)}): "
        f"webhook lag (sent -> processed) p50 {1000 * p50:.0f} ms, p99 {1000 * p99:.0f} ms, "
        f"max {1000 * max(lags):.0f} ms"
    )
    return statuses.get(200, 0) == len(payloads), {"lag_p50_ms": 1000 * p50, "lag_p99_ms": 1000 * p99}


def phase_outage(port: int, env: dict, books: Books, redis_server: RedisServer, stored: int, args) -> bool:
    events = new_events(env, args.outage_events)
    burst = deliveries(events, 0, seed=11)
    half = len(burst) // 2
    first_elapsed, first = post_all(port, burst[:half], args.senders)
    redis_server.kill()
    down_elapsed, second = post_all(port, burst[half:], args.senders)
    redis_server.start()
    back = time.monotonic()
    statuses = {s: first.get(s, 0) + second.get(s, 0) for s in {*first, *second}}
    total, done = books.counts()
    print(
        f"4. Redis outage: {half} deliveries with Redis up ({half / first_elapsed:,.0f}/s), then Redis killed, "
        f"{len(burst) - half} with it down ({(len(burst) - half) / down_elapsed:,.0f}/s): {answered(statuses)}; "
        f"{total - stored} stored, {done - stored} processed when Redis came back"
    )
    waited = books.wait_all_processed(stored + len(burst), timeout=args.outage_timeout)
    if waited is None:
        total, done = books.counts()
        print(f"   NOT all processed within {args.outage_timeout:.0f} s of Redis' return: {done} of {total}")
        return False
    print(f"   all {len(burst)} processed {time.monotonic() - back:.1f} s after Redis came back (the sweeper)")
    return statuses.get(200, 0) == len(burst)


def check_receipts(catcher: MailCatcher, orders: int, args) -> bool:
    """Every paid order's receipt arrives over SMTP, once (sent by the workers after the events:
    their tasks have a lower priority)."""
    waited = catcher.wait_for("receipt", orders, timeout=args.timeout)
    kinds = catcher.kinds()
    print(
        f"5. mail: {kinds.get('receipt', 0)} receipts caught for {orders} paid orders"
        + ("" if waited is None else f" (the last {waited:.1f} s after the checks above)")
        + f"; all caught: {dict(sorted(kinds.items()))}"
    )
    return kinds.get("receipt", 0) == orders


def check_books(env: dict, orders: int, label: str) -> bool:
    with store_app(env):
        problems = check_exactly_once(orders)
    print(
        f"   exactly once ({label}):",
        "; ".join(problems)
        if problems
        else f"{orders} orders paid once, {orders} ledger entries, balances match, "
        f"{orders} events stored and processed",
    )
    return not problems


def run(args) -> bool:
    redis_server = RedisServer(args.redis_port)
    redis_server.start()
    try:
        with throwaway_postgres(args.postgres, "bench_queue") as database_url:
            env = bench_env(
                database_url,
                STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                REDIS_URL=redis_server.url,
                LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            )
            for name in ("QUEUE_URL", "CACHE_REDIS_URL"):
                env.pop(name, None)
            catcher = MailCatcher(env)
            try:
                env.update(catcher.settings())
                seed_store(env)
                ok = run_phases(env, Books(database_url), redis_server, catcher, args)
            finally:
                catcher.stop()
    finally:
        redis_server.kill()
    print("targets:", "all met" if ok else "NOT all met", f"(queue worker log: {WORKER_LOG})")
    return ok


def run_phases(env: dict, books: Books, redis_server: RedisServer, catcher: MailCatcher, args) -> bool:
    events = new_events(env, args.warmup + args.events)
    warmup, burst = (
        deliveries(events[: args.warmup], 0, seed=3),
        deliveries(events[args.warmup :], args.duplicates, seed=5),
    )
    port = free_port()
    server = gunicorn(
        "wsgi:app", port, env, argparse.Namespace(workers=args.webhook_workers, worker_class="sync", threads=1)
    )
    workers: QueueWorkers | None = None
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", server)
        print(
            f"gunicorn -w {args.webhook_workers} sync; {describe_workers(args)}; "
            f"PostgreSQL; Redis on :{args.redis_port}; {args.senders} senders; {os.cpu_count()} CPUs"
        )
        post_all(port, warmup, args.senders)  # each gunicorn worker's first requests: imports, connections
        ok, _ = phase_acknowledge(port, server, burst, args)
        stored = args.warmup + args.events
        met, _, workers = phase_process(env, books, stored, args)
        ok &= check_books(env, stored, "after the burst") and met
        if args.lag_events:
            met, _ = phase_lag(port, env, books, stored, args)
            ok &= met
            stored += args.lag_events
        if args.outage_events:
            ok &= phase_outage(port, env, books, redis_server, stored, args)
            stored += args.outage_events
            ok &= check_books(env, stored, "after the outage")
        return check_receipts(catcher, stored, args) and ok
    finally:
        if workers is not None:
            workers.stop()
        stop(server)
        books.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="distinct events in the burst (= orders)")
    parser.add_argument("--duplicates", type=int, default=300, help="re-deliveries among them")
    parser.add_argument(
        "--warmup", type=int, default=200, help="events delivered before the timed burst (processed with it)"
    )
    parser.add_argument("--senders", type=int, default=32, help="concurrent webhook senders")
    parser.add_argument("--webhook-workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--queue-workers", type=int, default=1, help="threads of each `flask worker`")
    parser.add_argument("--queue-processes", type=int, default=2, help="`flask worker` processes")
    parser.add_argument("--lag-events", type=int, default=600, help="events of the lag phase (0: skip)")
    parser.add_argument("--lag-rate", type=float, default=100.0, help="their rate, per second")
    parser.add_argument("--outage-events", type=int, default=2000, help="events of the Redis outage (0: skip)")
    parser.add_argument("--redis-port", type=int, default=6390, help="port of the bench's own redis-server")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for processing")
    parser.add_argument(
        "--outage-timeout", type=float, default=150.0, help="seconds to wait after Redis returns (the sweeper)"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server (any database on it) where the throw-away database is made",
    )
    return 0 if run(parser.parse_args()) else 1


if __name__ == "__main__":
    sys.exit(main())
