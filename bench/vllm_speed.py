"""Texts/s of the shipped model through vLLM against ``Classifier.predict`` in this process, on the
same bundled test rows, in one run; with how long the vLLM server took to start and how closely the
two agree.

    .venv/bin/python bench/vllm_speed.py [--rows 200] [--model BUNDLE] [--enforce-eager]

Needs the vLLM venv (``make vllm``). On a CPU both sides run float32 (no fast bf16 in vLLM's CPU
kernels without AMX); on a GPU (``make vllm VLLM_SPEC=vllm==0.32.0``) vLLM runs bfloat16 and the
torch side runs on the GPU too (precision auto), and the same script prints the GPU figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
import torch
from common import machine, other_load

from patentclf.corpus.data import load_split, stratified_subset
from patentclf.inference.classifier import Classifier
from patentclf.inference.engines.vllm import VllmServer, vllm_available
from patentclf.model.bundle import default_model_dir
from patentclf.training.export import export_merged


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--model", type=Path, default=default_model_dir())
    parser.add_argument("--batch-size", type=int, default=None, help="windows per vLLM request (default 32)")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile (faster start)")
    args = parser.parse_args()
    reason = vllm_available()
    if reason:
        sys.exit(f"vLLM cannot run here: {reason}")

    gpu = torch.cuda.is_available()
    dtype = "bfloat16" if gpu else "float32"
    texts = stratified_subset(load_split("bundled", "test"), args.rows, seed=11).texts
    print(f"{machine()}; {len(texts)} bundled test rows")
    print(f"before: {other_load()}")

    with tempfile.TemporaryDirectory() as workdir:
        export, export_s = timed(lambda: export_merged(args.model, Path(workdir) / "export", dtype=dtype))
        server = VllmServer(export, dtype=dtype, log=Path(workdir) / "vllm.log", enforce_eager=args.enforce_eager)
        _, start_s = timed(server.start)
        try:
            served = Classifier.load(args.model, engine="vllm", vllm_url=server.url)
            served.predict(texts[:4])  # first-request costs out of the figures
            via_vllm, vllm_s = timed(lambda: served.predict(texts, batch_size=args.batch_size))
        finally:
            server.stop()

    local = Classifier.load(args.model, precision="auto" if gpu else "fp32")
    local.predict(texts[:4])
    here, local_s = timed(lambda: local.predict(texts))

    agree = sum(a.label == b.label for a, b in zip(here, via_vllm)) / len(texts)
    gap = max(max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) for a, b in zip(here, via_vllm))
    print(f"export {export_s:.0f} s, vLLM server start {start_s:.0f} s ({dtype}{', eager' if args.enforce_eager else ''})")
    print(f"{'engine':<28} {'texts/s':>8} {'seconds':>8}")
    print(f"{'Classifier.predict (torch)':<28} {len(texts) / local_s:>8.2f} {local_s:>8.1f}")
    print(f"{'vLLM server (' + dtype + ')':<28} {len(texts) / vllm_s:>8.2f} {vllm_s:>8.1f}")
    print(f"same label on {agree:.1%} of rows; largest section probability difference {gap:.2e}")
    print(f"after: {other_load()}")


if __name__ == "__main__":
    main()
