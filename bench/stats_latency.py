"""/stats latency with a million logged predictions: rolled-up counts vs a scan of the log, in one run.

Fills a fresh database through the service's own write path (``PredictionLog.add`` + ``flush``: log rows
and rolled-up counts in one transaction per flush) with ``--rows`` predictions spread over ``--days``,
then times, on the same database:

* baseline: the queries ``/stats`` ran before the counts were rolled up (scans of the whole log);
* ``PredictionLog.stats()``: what ``/stats`` runs now (a few hundred rows of counts);
* ``GET /stats`` over HTTP from a ``patentclf serve`` on loopback (tiny random model; /stats does not
  touch it), unless ``--no-http``.

Both computations must give the same figures; the benchmark checks that before it prints.

    python bench/stats_latency.py                              # a temporary SQLite file, 1,000,000 rows
    python bench/stats_latency.py --rows 100000 --repeats 10
    python bench/stats_latency.py --database-url postgresql://user@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from common import other_load

from patentclf.corpus.labels import CODES
from patentclf.store.database import Store
from patentclf.store.monitoring import LoggedPrediction, PredictionLog

CHUNK = 20_000  # rows per flush while filling (the service flushes about once a second)


def fill(log: PredictionLog, rows: int, days: float, seed: int = 0) -> float:
    """Log ``rows`` predictions spread evenly over the last ``days``; returns rows/s."""
    rng = random.Random(seed)
    start = datetime.now(timezone.utc) - timedelta(days=days)
    step = timedelta(days=days) / rows
    started = time.perf_counter()
    for first in range(0, rows, CHUNK):
        batch = []
        for i in range(first, min(first + CHUNK, rows)):
            confidence = rng.betavariate(5, 2)
            when = (start + step * i).isoformat(timespec="milliseconds")
            batch.append(LoggedPrediction(f"{i:032x}", when, "bench@1", rng.choice(CODES), confidence, 40.0, confidence < 0.5))
        log.add(batch)
        log.flush()
        print(f"\r  logged {min(first + CHUNK, rows):,} / {rows:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows / (time.perf_counter() - started)


def stats_by_scan(store: Store, *, bucket: str = "hour", buckets: int = 48) -> dict:
    """The previous release's /stats: every figure counted from the log's rows, each time."""
    width = {"hour": 13, "minute": 16}[bucket]
    suffix = ":00:00+00:00" if bucket == "hour" else ":00+00:00"
    if store.dialect == "sqlite":
        decile = "MIN(CAST(confidence * 10 AS INTEGER), 9)"
    else:
        decile = "LEAST(CAST(FLOOR(confidence * 10) AS INTEGER), 9)"
    with store.read() as conn:
        total, review = conn.execute(sa.text("SELECT COUNT(*), COALESCE(SUM(needs_review), 0) FROM predictions")).one()
        recent = f"SELECT substr(time, 1, {width}) AS b, COUNT(*) FROM predictions GROUP BY b ORDER BY b DESC LIMIT :n"
        over_time = conn.execute(sa.text(recent), {"n": buckets}).all()
        mix = dict(conn.execute(sa.text("SELECT label, COUNT(*) FROM predictions GROUP BY label")).all())
        bins = dict(conn.execute(sa.text(f"SELECT {decile} AS b, COUNT(*) FROM predictions GROUP BY b")).all())
    return {
        "predictions_total": int(total),
        "needs_review_total": int(review),
        "predictions_over_time": [{"time": b + suffix, "count": int(n)} for b, n in reversed(over_time)],
        "label_mix": {code: int(mix.get(code, 0)) for code in CODES},
        "confidence_histogram": [{"bin": f"{i / 10:.1f}-{(i + 1) / 10:.1f}", "count": int(bins.get(i, 0))} for i in range(10)],
    }


def timed(function, repeats: int) -> tuple[float, object]:
    """Median milliseconds of ``repeats`` calls (after one warm-up call), and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def http_stats_ms(target: str, repeats: int) -> float:
    import httpx
    from load_service import tiny_random_bundle

    from tests.servers import LiveServer

    with tempfile.TemporaryDirectory(prefix="stats-bench-") as folder:
        model = tiny_random_bundle(Path(folder))
        options = {"env": {"PATENTCLF_DATABASE_URL": target}} if "://" in target else {"feedback_db": target}
        with LiveServer(model, **options) as server, httpx.Client(timeout=600) as client:
            milliseconds, response = timed(lambda: client.get(server.url + "/stats"), repeats)
            response.raise_for_status()
            return milliseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0, help="the rows' times spread over this many days")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a temporary SQLite file)")
    parser.add_argument("--no-http", action="store_true", help="skip GET /stats on a live server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stats-bench-db-") as folder:
        target = args.database_url or str(Path(folder) / "bench.db")
        store = Store(target)
        log = PredictionLog(store)
        print(f"database: {store.describe()}; {other_load()}", file=sys.stderr)
        rate = fill(log, args.rows, args.days)
        scan_ms, by_scan = timed(lambda: stats_by_scan(store), max(3, args.repeats // 4))
        rolled_ms, rolled = timed(log.stats, args.repeats)
        if by_scan != rolled:
            raise SystemExit("the rolled-up counts disagree with a scan of the log")
        http_ms = None if args.no_http else http_stats_ms(target, args.repeats)

    print(f"\n/stats with {args.rows:,} logged predictions over {args.days:g} days ({store.dialect})")
    print("| what | median latency |\n|---|---|")
    print(f"| baseline: the previous /stats queries, scanning the log | {scan_ms:,.1f} ms |")
    print(f"| PredictionLog.stats(): rolled-up counts | {rolled_ms:,.2f} ms ({scan_ms / rolled_ms:,.0f}x faster) |")
    if http_ms is not None:
        print(f"| GET /stats over HTTP (loopback, same database) | {http_ms:,.1f} ms |")
    print(f"\nlogging through PredictionLog.flush (rows + counts, {CHUNK:,} a transaction): {rate:,.0f} rows/s")
    print(f"{other_load()}")


if __name__ == "__main__":
    main()
