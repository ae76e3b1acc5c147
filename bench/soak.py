"""Soak test of the HTTP service on loopback: mixed traffic (good and bad input, feedback, monitoring)
for a bounded time, with a SIGKILL of a server and its restart, and (on PostgreSQL) a database restart.

It reports what a careful operator would want to know afterwards:

* unexpected 5xx: any 5xx except a 503 with Retry-After (load shedding, a passed deadline, or the model
  loading after the restart), and any good request refused with a 4xx;
* lost acknowledged feedback: feedback answered 201 that is missing from the database at the end;
* each server's memory (RSS) over time, before and after the restart, with the load average;
* latency percentiles per window (default 20 minutes) for predictions, batches and feedback.

    python bench/soak.py                         # 10 minutes, the tiny random model (service overhead)
    python bench/soak.py --minutes 3 --model shipped --clients 8 --json soak.json
    python bench/soak.py --minutes 100 --model shipped --replicas 2 --database postgres \
        --db-restart-at 0.3 --kill-at 0.6 --clients 4 --think-s 0.2 --json soak.json

With ``--database postgres`` a throwaway PostgreSQL server is started (tests/pg_server.py, the
Debian binaries); ``--db-restart-at`` stops it for ``--db-down-s`` seconds and starts it again.
With several replicas, client i talks to replica i mod N, and replica 0 is the one SIGKILLed.

Exit status 1 when there were unexpected 5xx or lost feedback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import common  # noqa: F401  (sets offline mode and the import path)
import httpx

from patentclf.corpus.data import load_split
from patentclf.store.feedback import FeedbackStore
from tests.servers import LiveServer

API_KEY = "soak-key"
SETTINGS = dict(max_text_chars=20_000, max_batch=32, queue_size=64, request_timeout_s=30, retry_after_s=1, log_flush_s=1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--model", default="tiny", help="tiny (random two-layer model) | shipped | a bundle folder")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--kill-at", type=float, default=0.5, help="when to SIGKILL the server, as a fraction of the run")
    parser.add_argument("--replicas", type=int, default=1, help="servers on the one database (more than 1: --database postgres)")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--db-restart-at", type=float, help="when to restart PostgreSQL, as a fraction of the run")
    parser.add_argument("--db-down-s", type=float, default=8.0, help="how long PostgreSQL stays stopped (default 8)")
    parser.add_argument("--think-s", type=float, default=0.0, help="each client's pause between two requests")
    parser.add_argument("--window-min", type=float, default=20.0, help="latency percentiles per this many minutes")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between two memory samples")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.clients < 1 or not 0 < args.kill_at < 1:
        parser.error("--minutes must be > 0, --clients >= 1 and --kill-at between 0 and 1")
    if args.replicas < 1 or (args.replicas > 1 and args.database != "postgres"):
        parser.error("--replicas must be >= 1; several replicas need --database postgres")
    if args.db_restart_at is not None and (args.database != "postgres" or not 0 < args.db_restart_at < 1):
        parser.error("--db-restart-at needs --database postgres and a fraction between 0 and 1")
    return args


@dataclass
class Tally:
    """What happened, by request kind and outcome."""

    outcomes: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)  # the first few, for the report
    unexpected_count: int = 0
    acknowledged: dict[int, dict] = field(default_factory=dict)  # feedback id -> what was sent
    prediction_ids: list[str] = field(default_factory=list)
    down_errors: int = 0  # connection errors while the server was down (expected)
    other_transport_errors: int = 0
    latencies: list[tuple[float, str, float]] = field(default_factory=list)  # (t, kind, seconds) of good answers
    db_down: bool = False  # PostgreSQL is being restarted
    during_db_restart: Counter = field(default_factory=Counter)  # (kind, status) while PostgreSQL was down
    started: float = field(default_factory=time.monotonic)

    def wrong(self, kind: str, response: httpx.Response) -> None:
        self.unexpected_count += 1
        if len(self.unexpected) < 20:
            self.unexpected.append(f"{kind}: {response.status_code} {response.text[:200]}")


class Traffic:
    """One client's requests: each kind knows the answers it may legitimately get."""

    def __init__(self, texts: list[str], tally: Tally, rng: random.Random):
        self.texts, self.tally, self.rng = texts, tally, rng
        headers = {"X-API-Key": API_KEY}
        too_long = "x " * SETTINGS["max_text_chars"]
        self.kinds = [  # (weight, kind, method, path, body factory, allowed statuses)
            (30, "predict", "POST", "/predict", lambda: {"text": self.text()}, {200}),
            (
                10,
                "batch",
                "POST",
                "/predict/batch",
                lambda: {"texts": [self.text() for _ in range(self.rng.randint(2, 16))]},
                {200},
            ),
            (
                2,
                "large batch",
                "POST",
                "/predict/batch",
                lambda: {"texts": [self.long_text() for _ in range(SETTINGS["max_batch"])]},
                {200},
            ),
            (10, "feedback by id", "POST", "/feedback", self.feedback_by_id, {201}),
            (
                4,
                "feedback by text",
                "POST",
                "/feedback",
                lambda: {"text": self.text(), "label": self.rng.choice("ABCDEFGH")},
                {201},
            ),
            (3, "empty text", "POST", "/predict", lambda: {"text": " \n "}, {422}),
            (2, "not JSON", "POST", "/predict", lambda: b"{not json", {422}),
            (2, "wrong type", "POST", "/predict/batch", lambda: {"texts": "one text"}, {422}),
            (2, "text too long", "POST", "/predict", lambda: {"text": too_long}, {413}),
            (1, "batch too large", "POST", "/predict/batch", lambda: {"texts": ["a text"] * (SETTINGS["max_batch"] + 1)}, {413}),
            (2, "bad label", "POST", "/feedback", lambda: {"text": "a text", "label": "Q"}, {422}),
            (2, "no key", "POST", "/feedback", lambda: {"text": "a text", "label": "A"}, {401}),
            (1, "unknown id", "POST", "/feedback", lambda: {"prediction_id": "0" * 32, "label": "A"}, {404}),
            (
                1,
                "body too large",
                "POST",
                "/predict",
                lambda: {"text": "a text", "padding": " " * 5_000_000},
                {413},
            ),  # limit ~3.9 MB
            (3, "stats", "GET", "/stats", None, {200}),
            (2, "metrics", "GET", "/metrics", None, {200}),
            (2, "ready", "GET", "/ready", None, {200, 503}),  # 503 while the restarted server loads
        ]
        self.weights = [k[0] for k in self.kinds]
        self.headers = {"feedback by id": headers, "feedback by text": headers, "bad label": headers, "unknown id": headers}

    def text(self) -> str:
        return self.rng.choice(self.texts)

    def long_text(self) -> str:
        return ((self.text() + " ") * 8)[: SETTINGS["max_text_chars"]]

    def feedback_by_id(self) -> dict:
        ids = self.tally.prediction_ids
        if not ids:  # none yet since the (re)start: a correction by text instead
            return {"text": self.text(), "label": self.rng.choice("ABCDEFGH")}
        return {"prediction_id": self.rng.choice(ids), "label": self.rng.choice("ABCDEFGH")}

    async def one(self, http: httpx.AsyncClient, url: str) -> None:
        _, kind, method, path, make, allowed = self.rng.choices(self.kinds, self.weights)[0]
        body = make() if make else None
        content = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
        headers = {"content-type": "application/json", **self.headers.get(kind, {})}
        sent = time.monotonic()
        try:
            response = await http.request(method, url + path, content=content, headers=headers)
        except httpx.WriteError:
            if kind == "body too large":  # refused by its Content-Length before the client finished sending: fine
                self.tally.outcomes[(kind, "closed while sending")] += 1
                return
            raise
        code = response.status_code
        self.tally.outcomes[(kind, code)] += 1
        if self.tally.db_down:
            self.tally.during_db_restart[(kind, code)] += 1
        if code in allowed:
            self.record(kind, body, response)
            if kind in ("predict", "batch", "feedback by id", "feedback by text"):
                self.tally.latencies.append((sent - self.tally.started, kind, time.monotonic() - sent))
        elif not (code == 503 and "retry-after" in response.headers):  # shed load or a deadline: allowed, said so
            self.tally.wrong(kind, response)

    def record(self, kind: str, body, response: httpx.Response) -> None:
        if response.status_code == 200 and kind == "predict":
            self.tally.prediction_ids.append(response.json()["id"])
            del self.tally.prediction_ids[:-200]  # recent ones: the server holds their texts in memory
        elif response.status_code == 201:
            ack = response.json()
            self.tally.acknowledged[ack["feedback_id"]] = {
                "label": ack["label"],
                "text": body.get("text"),
                "prediction_id": body.get("prediction_id"),
            }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start_postgres(workdir: Path):
    """A throwaway PostgreSQL server (tests/pg_server.py) and a new database on it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        sys.exit("--database postgres: no initdb / pg_ctl (apt-get install postgresql)")
    pg = PostgresServer(bindir).start()
    return pg, pg.create_database()


async def soak(args: argparse.Namespace, model: Path, workdir: Path) -> dict:
    texts = load_split("bundled", "test", require_labels=False).texts
    tally = Tally()
    pg, db = None, workdir / "feedback.db"
    env = {"PATENTCLF_API_KEY": API_KEY}
    if args.database == "postgres":
        pg, db = await asyncio.to_thread(start_postgres, workdir)
        env["PATENTCLF_DATABASE_URL"] = db
    options = dict(env=env, feedback_db=workdir / "feedback.db", precision=args.precision, **SETTINGS)
    servers = [LiveServer(model, log_path=workdir / f"server-{i}.log", **options) for i in range(args.replicas)]
    for server in servers:  # one after the other: two model loads at once would only slow both
        await asyncio.to_thread(server.start)
    replicas = [{"server": s, "up": True, "generation": 1, "port": s.port} for s in servers]
    tally.started = started = time.monotonic()
    ends = started + args.minutes * 60
    memory: list[dict] = []
    events: list[dict] = []
    state = {"restart_s": None, "db_down_s": None, "db_back_first_201_s": None}

    def note(what: str, **fields) -> None:
        events.append({"t": round(time.monotonic() - started, 1), "event": what, **fields})
        print(f"  {time.monotonic() - started:.0f} s: {what} {fields or ''}", file=sys.stderr)

    async def client(index: int) -> None:
        traffic = Traffic(texts, tally, random.Random(args.seed * 1000 + index))
        replica = replicas[index % len(replicas)]
        async with httpx.AsyncClient(timeout=SETTINGS["request_timeout_s"] + 30) as http:
            while time.monotonic() < ends:
                try:
                    await traffic.one(http, replica["server"].url)
                except httpx.TransportError:
                    if replica["up"]:
                        tally.other_transport_errors += 1
                    else:
                        tally.down_errors += 1
                    await asyncio.sleep(0.2)
                if args.think_s:
                    await asyncio.sleep(args.think_s)

    async def sampler() -> None:
        while time.monotonic() < ends:
            sample = {"t": round(time.monotonic() - started, 1), "load": load_average()}
            for i, replica in enumerate(replicas):
                process = replica["server"].process
                if replica["up"] and process and process.poll() is None:
                    value = rss_mb(process.pid)
                    if value is not None:
                        sample[f"r{i}"] = {"server": replica["generation"], "rss_mb": round(value, 1)}
            memory.append(sample)
            await asyncio.sleep(args.sample_s)

    async def killer() -> None:
        await asyncio.sleep(max(0.0, started + args.minutes * 60 * args.kill_at - time.monotonic()))
        replica = replicas[0]
        replica["up"] = False
        replica["server"].kill()  # SIGKILL: no shutdown code runs
        tally.prediction_ids.clear()  # the new server has no memory of their texts (and unflushed ids are gone)
        note("replica 0 killed (SIGKILL); restarting")
        down = time.monotonic()
        fresh = LiveServer(model, log_path=workdir / "server-0-restarted.log", **options)
        fresh.port, fresh.url = replica["port"], f"http://127.0.0.1:{replica['port']}"
        replica["server"] = await asyncio.to_thread(fresh.start)
        replica["generation"], replica["up"] = 2, True
        state["restart_s"] = round(time.monotonic() - down, 1)
        note("replica 0 ready again", after_s=state["restart_s"])

    async def db_restarter() -> None:
        if pg is None or args.db_restart_at is None:
            return
        await asyncio.sleep(max(0.0, started + args.minutes * 60 * args.db_restart_at - time.monotonic()))
        tally.db_down = True
        down = time.monotonic()
        note("PostgreSQL stopping (pg_ctl stop -m fast)")
        await asyncio.to_thread(pg.stop_server)
        await asyncio.sleep(args.db_down_s)
        await asyncio.to_thread(pg.start_server)
        state["db_down_s"] = round(time.monotonic() - down, 1)
        note("PostgreSQL started again", down_s=state["db_down_s"])
        acknowledged = len(tally.acknowledged)
        while len(tally.acknowledged) == acknowledged and time.monotonic() < ends:
            await asyncio.sleep(0.05)
        tally.db_down = False
        state["db_back_first_201_s"] = round(time.monotonic() - down - state["db_down_s"], 1)
        note("feedback acknowledged again", after_start_s=state["db_back_first_201_s"])

    try:
        await asyncio.gather(sampler(), killer(), db_restarter(), *(client(i) for i in range(args.clients)))
        return figures(args, tally, memory, events, db, state, time.monotonic() - started)
    finally:
        for replica in replicas:
            await asyncio.to_thread(replica["server"].stop)
        if pg is not None:
            pg.stop()


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 1)}


def figures(args, tally: Tally, memory: list[dict], events: list[dict], db, state: dict, seconds: float) -> dict:
    store = FeedbackStore(db)
    lost = []
    for feedback_id, sent in tally.acknowledged.items():
        row = store.get(feedback_id)
        if row is None or row["label"] != sent["label"] or (sent["text"] and row["text"] != sent["text"]):
            lost.append(feedback_id)

    def rss_summary(replica: int, generation: int) -> dict:
        points = [(m["t"], m[f"r{replica}"]["rss_mb"]) for m in memory if m.get(f"r{replica}", {}).get("server") == generation]
        if len(points) < 2:
            return {"samples": len(points)}
        values = [v for _, v in points]
        half = values[len(values) // 2 :]  # after the warm-up half
        by_10_min = {}
        for t, v in points:  # the last sample of each 10 minutes since the start of the run
            by_10_min[f"{int(t // 600) * 10 + 10} min"] = v
        return {
            "samples": len(values),
            "first_mb": values[0],
            "max_mb": max(values),
            "last_mb": values[-1],
            "second_half_growth_mb": round(half[-1] - half[0], 1),
            "second_half_minutes": round((points[-1][0] - points[len(points) // 2][0]) / 60, 1),
            "by_10_min": by_10_min,
        }

    window = args.window_min * 60
    windows = {}
    for t, kind, latency in tally.latencies:
        name = f"{int(t // window) * args.window_min:g}-{int(t // window) * args.window_min + args.window_min:g} min"
        windows.setdefault(name, {}).setdefault("feedback" if kind.startswith("feedback") else kind, []).append(latency)
    loads = [m["load"] for m in memory if m.get("load") is not None]

    by_kind: dict[str, dict[str, int]] = {}
    for (kind, code), count in sorted(tally.outcomes.items()):
        by_kind.setdefault(kind, {})[str(code)] = count
    during: dict[str, dict[str, int]] = {}
    for (kind, code), count in sorted(tally.during_db_restart.items()):
        during.setdefault(kind, {})[str(code)] = count
    return {
        "minutes": round(seconds / 60, 2),
        "clients": args.clients,
        "replicas": args.replicas,
        "database": args.database,
        "think_s": args.think_s,
        "requests": sum(tally.outcomes.values()),
        "by_kind": by_kind,
        "unexpected_5xx_or_refusals": tally.unexpected_count,
        "unexpected_examples": tally.unexpected,
        "connection_errors_while_down": tally.down_errors,
        "connection_errors_while_up": tally.other_transport_errors,
        "restart_seconds": state["restart_s"],
        "db_down_seconds": state["db_down_s"],
        "db_first_201_after_start_s": state["db_back_first_201_s"],
        "answers_during_db_restart": during,
        "events": events,
        "feedback_acknowledged": len(tally.acknowledged),
        "feedback_lost": len(lost),
        "feedback_rows_in_db": store.count(),
        "load_average": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)} if loads else None,
        "rss": {
            f"replica {r}, server {g}": rss_summary(r, g) for r in range(args.replicas) for g in ((1, 2) if r == 0 else (1,))
        },
        "latency_by_window": {
            name: {kind: percentiles(values) for kind, values in sorted(kinds.items())} for name, kinds in windows.items()
        },
        "memory": memory,
    }


def report(result: dict) -> None:
    print(
        f"\nsoak: {result['minutes']} min, {result['replicas']} replica(s) on {result['database']}, {result['clients']} clients "
        f"(think {result['think_s']} s), {result['requests']} requests; SIGKILL + restart of replica 0 "
        f"({result['restart_seconds']} s to ready again)"
    )
    if result["db_down_seconds"] is not None:
        print(
            f"PostgreSQL down {result['db_down_seconds']} s; first 201 {result['db_first_201_after_start_s']} s after it "
            f"started; answers meanwhile: {result['answers_during_db_restart']}"
        )
    for kind, codes in result["by_kind"].items():
        print(f"  {kind:<18} " + ", ".join(f"{code}: {n}" for code, n in codes.items()))
    print(f"unexpected 5xx / refusals of good input: {result['unexpected_5xx_or_refusals']}")
    for example in result["unexpected_examples"][:5]:
        print(f"    {example}")
    down, up = result["connection_errors_while_down"], result["connection_errors_while_up"]
    print(f"connection errors: {down} while the server was down, {up} while up")
    acknowledged, lost, rows = result["feedback_acknowledged"], result["feedback_lost"], result["feedback_rows_in_db"]
    print(f"feedback: {acknowledged} acknowledged, {lost} lost ({rows} rows in the database)")
    print(f"load average (1 min) during the run: {result['load_average']}")
    for name, summary in result["rss"].items():
        print(f"RSS {name}: {summary}")
    for name, kinds in result["latency_by_window"].items():
        print(f"latency {name}: " + "; ".join(f"{kind} {p}" for kind, p in kinds.items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load_service import resolve_model  # the same model choices as the load benchmark

    workdir = Path(tempfile.mkdtemp(prefix="patentclf-soak-"))
    model = resolve_model(args.model, workdir)
    print(
        f"soak for {args.minutes:g} min; server logs and database in {workdir}; patentclf from {os.path.dirname(sys.modules['patentclf'].__file__)}",
        file=sys.stderr,
    )
    result = asyncio.run(soak(args, model, workdir))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["unexpected_5xx_or_refusals"] or result["feedback_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
