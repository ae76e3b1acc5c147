"""bench/gpu_train.py runs end to end with a tiny Llama on CPU (the full shape needs a CUDA GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_train_bench_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu_train.py"), "--tiny", "--steps", "2", "--warmup", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tiny"] is True
    assert [r["path"] for r in report["results"]] == ["baseline", "new"]
    for r in report["results"]:
        assert (
            r["samples_per_s"] > 0 and abs(r["tokens_per_s"] - r["samples_per_s"] * report["seq_len"]) < 1e-6 * r["tokens_per_s"]
        )
        assert 0 < r["mfu"] < r["mfu_6n_convention"]  # LoRA's honest count is below the 6*N convention
        # 4*N_frozen + 6*N_trainable + attention: the formula the script documents
        assert r["flops_per_token"] > 4 * r["n_frozen"] + 6 * r["n_trainable"]
        assert r["n_trainable"] < r["n_frozen"]
    assert "MFU" in done.stdout and "vs baseline" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the full shape would run, not be refused")
def test_gpu_train_bench_refuses_the_full_shape_without_cuda():
    done = subprocess.run([sys.executable, str(BENCH / "gpu_train.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "CUDA" in done.stderr
