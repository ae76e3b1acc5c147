"""Soak test of the HTTP service on loopback: mixed traffic (good and bad input, feedback, monitoring)
for a bounded time, with a SIGKILL of the server and a restart half-way through.

It reports what a careful operator would want to know afterwards:

* unexpected 5xx: any 5xx except a 503 with Retry-After (load shedding, a passed deadline, or the model
  loading after the restart), and any good request refused with a 4xx;
* lost acknowledged feedback: feedback answered 201 that is missing from the database at the end;
* the server's memory (RSS) over time, before and after the restart.

    python bench/soak.py                         # 10 minutes, the tiny random model (service overhead)
    python bench/soak.py --minutes 3 --model shipped --clients 8 --json soak.json

Exit status 1 when there were unexpected 5xx or lost feedback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from patentclf.data import load_split
from patentclf.feedback import FeedbackStore
from patentclf.service.live import LiveServer

API_KEY = "soak-key"
SETTINGS = dict(max_text_chars=20_000, max_batch=32, queue_size=64, request_timeout_s=30, retry_after_s=1, log_flush_s=1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--model", default="tiny", help="tiny (random two-layer model) | shipped | a bundle folder")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--kill-at", type=float, default=0.5, help="when to SIGKILL the server, as a fraction of the run")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between two memory samples")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.clients < 1 or not 0 < args.kill_at < 1:
        parser.error("--minutes must be > 0, --clients >= 1 and --kill-at between 0 and 1")
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
        try:
            response = await http.request(method, url + path, content=content, headers=headers)
        except httpx.WriteError:
            if kind == "body too large":  # refused by its Content-Length before the client finished sending: fine
                self.tally.outcomes[(kind, "closed while sending")] += 1
                return
            raise
        code = response.status_code
        self.tally.outcomes[(kind, code)] += 1
        if code in allowed:
            self.record(kind, body, response)
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


async def soak(args: argparse.Namespace, model: Path, workdir: Path) -> dict:
    texts = load_split("bundled", "test", require_labels=False).texts
    tally = Tally()
    db = workdir / "feedback.db"
    options = dict(env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db, precision=args.precision, **SETTINGS)
    server = await asyncio.to_thread(LiveServer(model, log_path=workdir / "server.log", **options).start)
    port = server.port
    started = time.monotonic()
    ends = started + args.minutes * 60
    kill_at = started + args.minutes * 60 * args.kill_at
    memory: list[dict] = []
    state = {"up": True, "server": server, "generation": 1, "restart_s": None}

    async def client(index: int) -> None:
        traffic = Traffic(texts, tally, random.Random(args.seed * 1000 + index))
        async with httpx.AsyncClient(timeout=SETTINGS["request_timeout_s"] + 30) as http:
            while time.monotonic() < ends:
                try:
                    await traffic.one(http, state["server"].url)
                except httpx.TransportError:
                    if state["up"]:
                        tally.other_transport_errors += 1
                    else:
                        tally.down_errors += 1
                    await asyncio.sleep(0.2)

    async def sampler() -> None:
        while time.monotonic() < ends:
            process = state["server"].process
            if state["up"] and process and process.poll() is None:
                value = rss_mb(process.pid)
                if value is not None:
                    memory.append(
                        {"t": round(time.monotonic() - started, 1), "server": state["generation"], "rss_mb": round(value, 1)}
                    )
            await asyncio.sleep(args.sample_s)

    async def killer() -> None:
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        state["up"] = False
        state["server"].kill()  # SIGKILL: no shutdown code runs
        tally.prediction_ids.clear()  # the new server has no memory of their texts
        print(f"  {time.monotonic() - started:.0f} s: server killed (SIGKILL); restarting", file=sys.stderr)
        down = time.monotonic()
        fresh = LiveServer(model, log_path=workdir / "server-2.log", **options)
        fresh.port, fresh.url = port, f"http://127.0.0.1:{port}"
        state["server"] = await asyncio.to_thread(fresh.start)
        state["generation"], state["up"] = 2, True
        state["restart_s"] = round(time.monotonic() - down, 1)
        print(f"  {time.monotonic() - started:.0f} s: server ready again after {state['restart_s']} s", file=sys.stderr)

    try:
        await asyncio.gather(sampler(), killer(), *(client(i) for i in range(args.clients)))
    finally:
        await asyncio.to_thread(state["server"].stop)
    return figures(args, tally, memory, db, state, time.monotonic() - started)


def figures(args, tally: Tally, memory: list[dict], db: Path, state: dict, seconds: float) -> dict:
    store = FeedbackStore(db)
    lost = []
    for feedback_id, sent in tally.acknowledged.items():
        row = store.get(feedback_id)
        if row is None or row["label"] != sent["label"] or (sent["text"] and row["text"] != sent["text"]):
            lost.append(feedback_id)

    def rss_summary(generation: int) -> dict:
        values = [m["rss_mb"] for m in memory if m["server"] == generation]
        if len(values) < 2:
            return {"samples": len(values)}
        half = values[len(values) // 2 :]  # after the warm-up half
        return {
            "samples": len(values),
            "first_mb": values[0],
            "max_mb": max(values),
            "last_mb": values[-1],
            "second_half_growth_mb": round(half[-1] - half[0], 1),
            "second_half_median_mb": statistics.median(half),
        }

    by_kind: dict[str, dict[str, int]] = {}
    for (kind, code), count in sorted(tally.outcomes.items()):
        by_kind.setdefault(kind, {})[str(code)] = count
    return {
        "minutes": round(seconds / 60, 2),
        "clients": args.clients,
        "requests": sum(tally.outcomes.values()),
        "by_kind": by_kind,
        "unexpected_5xx_or_refusals": tally.unexpected_count,
        "unexpected_examples": tally.unexpected,
        "connection_errors_while_down": tally.down_errors,
        "connection_errors_while_up": tally.other_transport_errors,
        "restart_seconds": state["restart_s"],
        "feedback_acknowledged": len(tally.acknowledged),
        "feedback_lost": len(lost),
        "feedback_rows_in_db": store.count(),
        "rss_first_server": rss_summary(1),
        "rss_second_server": rss_summary(2),
        "memory": memory,
    }


def report(result: dict) -> None:
    print(
        f"\nsoak: {result['minutes']} min, {result['clients']} clients, {result['requests']} requests, SIGKILL + restart "
        f"({result['restart_seconds']} s to ready again)"
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
    for name in ("rss_first_server", "rss_second_server"):
        print(f"{name.replace('_', ' ')}: {result[name]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load_service import resolve_model  # the same model choices as the load benchmark

    workdir = Path(tempfile.mkdtemp(prefix="patentclf-soak-"))
    model = resolve_model(args.model, workdir)
    print(f"soak for {args.minutes:g} min; server logs and database in {workdir}", file=sys.stderr)
    result = asyncio.run(soak(args, model, workdir))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["unexpected_5xx_or_refusals"] or result["feedback_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
