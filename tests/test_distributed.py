"""`patentclf train` under `accelerate launch` (DDP): 2 CPU processes (gloo) x batch 8 match 1 process x batch 16.

Same global batch, same seeded data order (accelerate hands consecutive batches of one seeded
permutation to the ranks), fp32, no dropout: the only difference left is the order in which gloo sums
the two halves of each gradient, so the adapters agree to float32 rounding grown over 20 Adam steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from patentclf.model.bundle import load_bundle, read_info

# Measured on this machine: largest adapter weight difference 2e-7 (weights ~0.1), logits 1.2e-7.
WEIGHT_TOLERANCE = 1e-5
LOGIT_TOLERANCE = 1e-5


def _train(command: list[str], tmp_path, name: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tiny_base_model, toy_data, tmp_path):
    options = [
        "train",
        "--data",
        str(toy_data),
        "--base-model",
        str(tiny_base_model),
        "--max-length",
        "64",
        "--epochs",
        "1",
        "--learning-rate",
        "3e-3",
        "--lora-r",
        "8",
        "--lora-dropout",
        "0",
        "--precision",
        "fp32",
        "--seed",
        "0",
        "--no-group-by-length",
        "--eval-limit",
        "16",
    ]
    two, one = tmp_path / "two-processes", tmp_path / "one-process"
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "patentclf.cli",
    ]
    _train(launch + options + ["--batch-size", "8", "--output-dir", str(two)], tmp_path, "accelerate launch, 2 processes")
    _train(
        [sys.executable, "-m", "patentclf.cli"] + options + ["--batch-size", "16", "--output-dir", str(one)],
        tmp_path,
        "1 process",
    )

    info_two, info_one = read_info(two), read_info(one)
    assert info_two.training.world_size == 2 and info_one.training.world_size == 1
    steps = lambda info: [row["step"] for row in info.training.log_history if "loss" in row]  # noqa: E731
    assert steps(info_two) == steps(info_one) == [10, 20]  # 320 rows / global batch 16
    losses = lambda info: [row["loss"] for row in info.training.log_history if "loss" in row]  # noqa: E731
    assert losses(info_two) == pytest.approx(losses(info_one), abs=1e-4)
    # Evaluation ran after training under DDP too (rank 0, on the saved bundle).
    assert info_two.metrics["validation"]["n"] == 16 and "test" in info_two.metrics

    weights_two, weights_one = load_file(two / "adapter_model.safetensors"), load_file(one / "adapter_model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    changed = max(float((weights_one[k] - weights_two[k]).abs().max()) for k in weights_one)
    assert changed <= WEIGHT_TOLERANCE, f"weights differ by {changed}"

    texts = ["the engine valve and turbine", "a polymer compound with acid", "circuit antenna battery"]
    model_two, tokenizer, _ = load_bundle(two, dtype=torch.float32)
    model_one, _, _ = load_bundle(one, dtype=torch.float32)
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits_two, logits_one = model_two(**batch).logits, model_one(**batch).logits
    assert torch.allclose(logits_two, logits_one, atol=LOGIT_TOLERANCE), (logits_two - logits_one).abs().max()
    print(json.dumps({"max_weight_difference": changed, "max_logit_difference": float((logits_two - logits_one).abs().max())}))
