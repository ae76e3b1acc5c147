"""Load benchmark for the HTTP service: micro-batching ON vs OFF, in one run, side by side.

Starts ``patentclf serve`` on a free loopback port (once per mode), runs N concurrent clients that
send real patent abstracts (the bundled test split) to ``POST /predict``, and prints throughput and
p50/p95/p99 latency for each mode with the ON/OFF ratios. Bounded by a request count and a time limit.

    python bench/load_service.py                       # tiny random model: measures the service's overhead
    python bench/load_service.py --model shipped       # the shipped model (SmolLM2 + LoRA)
    python bench/load_service.py --model DIR --clients 32 --requests 400 --max-seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common  # noqa: F401  (sets offline mode and the import path)
import httpx

from patentclf.corpus.data import load_split
from tests.servers import LiveServer


def tiny_random_bundle(folder: Path) -> Path:
    """A two-layer random Llama with SmolLM2's tokenizer, as an (untrained) bundle: its inference
    costs almost nothing, so what is measured is the service around it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from patentclf.model.base import (
        EMBEDDED_MODEL,
        LoraSettings,
        add_lora,
        load_classification_model,
        load_tokenizer,
        resolve_base_model,
    )
    from patentclf.model.bundle import BundleInfo, save_bundle

    base = folder / "tiny-base"
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(EMBEDDED_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    tokenizer = load_tokenizer(str(base))
    model = add_lora(load_classification_model(str(base), pad_token_id=tokenizer.pad_token_id), LoraSettings())
    info = BundleInfo.new(base_model=str(base), max_length=256, normalize="bigpatent")
    return save_bundle(model, tokenizer, info, folder / "tiny-model")


def resolve_model(choice: str, workdir: Path) -> Path:
    if choice == "tiny":
        return tiny_random_bundle(workdir)
    if choice == "shipped":
        from patentclf.model.bundle import default_model_dir

        path = default_model_dir()
        if not (path / "patentclf.json").is_file():
            sys.exit(f"the shipped model is not at {path} yet")
        return path
    return Path(choice)


@dataclass
class Result:
    mode: str
    sent: int
    ok: int
    rejected: int
    failed: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def run_load(
    url: str, texts: list[str], clients: int, requests: int, max_seconds: float
) -> tuple[int, int, int, int, float, list[float]]:
    """``clients`` workers share a budget of ``requests``; each stops at the time limit too."""
    next_index = 0
    latencies: list[float] = []
    counts = {"ok": 0, "rejected": 0, "failed": 0}
    started = time.perf_counter()
    deadline = started + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests and time.perf_counter() < deadline:
            text = texts[next_index % len(texts)]
            next_index += 1
            sent = time.perf_counter()
            try:
                response = await http.post(url + "/predict", json={"text": text})
            except httpx.HTTPError:
                counts["failed"] += 1
                continue
            if response.status_code == 200:
                counts["ok"] += 1
                latencies.append(time.perf_counter() - sent)
            elif response.status_code == 503:
                counts["rejected"] += 1
            else:
                counts["failed"] += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=max(30.0, max_seconds), limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return next_index, counts["ok"], counts["rejected"], counts["failed"], time.perf_counter() - started, latencies


def measure(mode: str, model: Path, texts: list[str], args, workdir: Path) -> Result:
    options = dict(
        feedback_db=workdir / f"{mode}.db",
        precision=args.precision,
        micro_batching=mode == "on",
        micro_batch_size=args.micro_batch_size,
        micro_batch_wait_ms=args.wait_ms,
        queue_size=max(256, 2 * args.clients),
    )
    with LiveServer(model, log_path=workdir / f"{mode}.log", **options) as server:
        asyncio.run(
            run_load(server.url, texts, min(args.clients, args.warmup), args.warmup, args.max_seconds)
        )  # warm-up, not counted
        sent, ok, rejected, failed, seconds, latencies = asyncio.run(
            run_load(server.url, texts, args.clients, args.requests, args.max_seconds)
        )
        metrics = httpx.get(server.url + "/metrics").text
    batch_count = next(
        (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("patentclf_batch_texts_count")), 0.0
    )
    batch_sum = next(
        (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("patentclf_batch_texts_sum")), 0.0
    )
    print(
        f"  micro-batching {mode}: {ok} ok in {seconds:.1f} s; mean texts per model call {batch_sum / batch_count if batch_count else 0:.1f}",
        file=sys.stderr,
    )
    return Result(mode, sent, ok, rejected, failed, seconds, latencies)


def report(on: Result, off: Result, args, model: Path) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:.0f} ms"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    rows = [
        ("requests answered 200", str(on.ok), str(off.ok), ratio(on.ok, off.ok)),
        ("503 (queue full)", str(on.rejected), str(off.rejected), ""),
        ("other failures", str(on.failed), str(off.failed), ""),
        ("wall time", f"{on.seconds:.1f} s", f"{off.seconds:.1f} s", ratio(on.seconds, off.seconds)),
        ("throughput", f"{on.throughput:.2f} req/s", f"{off.throughput:.2f} req/s", ratio(on.throughput, off.throughput)),
        (
            "mean latency",
            ms(statistics.fmean(on.latencies) if on.latencies else 0),
            ms(statistics.fmean(off.latencies) if off.latencies else 0),
            "",
        ),
    ]
    for q in (50, 95, 99):
        rows.append((f"p{q} latency", ms(on.percentile(q)), ms(off.percentile(q)), ratio(on.percentile(q), off.percentile(q))))
    print(
        f"\nmodel {model} | {args.clients} clients | up to {args.requests} requests or {args.max_seconds:.0f} s per mode | "
        f"micro-batch <= {args.micro_batch_size} texts, wait <= {args.wait_ms:g} ms | precision {args.precision} | {platform.node()}"
    )
    widths = [max(len(r[i]) for r in rows + [("", "micro-batching ON", "OFF", "ON/OFF")]) for i in range(4)]
    header = ("", "micro-batching ON", "OFF", "ON/OFF")
    for row in [header] + rows:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    r.mode: {
                        "ok": r.ok,
                        "rejected": r.rejected,
                        "failed": r.failed,
                        "seconds": r.seconds,
                        "throughput": r.throughput,
                        "p50": r.percentile(50),
                        "p95": r.percentile(95),
                        "p99": r.percentile(99),
                    }
                    for r in (on, off)
                },
                indent=2,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (random two-layer model) | shipped | a bundle folder")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=200, help="requests per mode (upper bound)")
    parser.add_argument("--max-seconds", type=float, default=60, help="time limit per mode")
    parser.add_argument("--warmup", type=int, default=8, help="requests sent before measuring")
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--wait-ms", type=float, default=10)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="patentclf-load-"))
    model = resolve_model(args.model, workdir)
    texts = load_split("bundled", "test", require_labels=False).texts
    print(f"load test: {len(texts)} distinct abstracts, server logs in {workdir}", file=sys.stderr)
    on = measure("on", model, texts, args, workdir)
    off = measure("off", model, texts, args, workdir)
    report(on, off, args, model)


if __name__ == "__main__":
    main()
