"""Shared fixtures: a learnable toy task, a tiny randomly initialised Llama and a bundle trained on it.

Fast tests use the tiny model (real tokenizer, real transformers/peft code paths); tests marked
``slow`` use the real SmolLM2 and the shipped model.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

import patentclf  # noqa: F401  (first: it sets GOMP_SPINCOUNT, which libgomp reads when torch loads)

# Tests never reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Ray clusters of the tests stay on loopback (tests/ray_cluster.py says why); Ray reads it on import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# Distinctive words per section for the toy task: learnable by a tiny model in a few dozen steps.
TOY_WORDS = {
    "A": ["medicine", "patient", "food", "surgical", "tooth"],
    "B": ["vehicle", "conveyor", "printing", "cutting", "robot"],
    "C": ["polymer", "alloy", "compound", "catalyst", "acid"],
    "D": ["yarn", "fabric", "paper", "weaving", "fibre"],
    "E": ["bridge", "building", "drilling", "door", "road"],
    "F": ["engine", "turbine", "valve", "lamp", "heating"],
    "G": ["optical", "measuring", "computer", "sensor", "clock"],
    "H": ["circuit", "antenna", "transistor", "battery", "signal"],
}
FILLER = ["the", "a", "device", "method", "system", "comprising", "with", "and", "of", "which", "is", "provided"]


def toy_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    codes = list(TOY_WORDS)
    for i in range(n):
        code = codes[i % len(codes)]
        words = rng.choices(FILLER, k=8) + rng.choices(TOY_WORDS[code], k=3)
        rng.shuffle(words)
        rows.append({"id": f"toy-{seed}-{i}", "text": " ".join(words), "section": code})
    return rows


# Toy codes: each section's rows fall in two classes (told apart by the word "rotary" or "linear")
# with one subclass each, and every third row also carries a second section's code (H04N, with the
# word "television"), so every hierarchy head has something to learn.
def toy_hierarchy_rows(n: int, seed: int = 0) -> list[dict]:
    rows = toy_rows(n, seed)
    for i, row in enumerate(rows):
        variant = (i // 8) % 2
        row["text"] += " rotary" if variant == 0 else " linear"
        row["ipc"] = f"{row['section']}0{1 + variant}K 1/00 (20060101)"
        if i % 3 == 0 and row["section"] != "H":
            row["text"] += " television"
            row["ipc"] += "; H04N 5/44 (20110101)"
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_toy_splits(folder: Path, make_rows) -> Path:
    """train / validation / test JSONL files of 320 / 48 / 48 rows from ``make_rows(n, seed)``."""
    for name, n, seed in (("train", 320, 1), ("validation", 48, 2), ("test", 48, 3)):
        write_jsonl(folder / f"{name}.jsonl", make_rows(n, seed=seed))
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """A folder with train / validation / test JSONL files of the toy task."""
    return write_toy_splits(tmp_path_factory.mktemp("toy-data"), toy_rows)


@pytest.fixture(scope="session")
def toy_hierarchy_data(tmp_path_factory) -> Path:
    """The toy task with IPC codes (``ipc``), for the hierarchy heads."""
    return write_toy_splits(tmp_path_factory.mktemp("toy-hierarchy-data"), toy_hierarchy_rows)


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """A randomly initialised two-layer Llama with SmolLM2's real tokenizer, saved as a local folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from patentclf.model.base import EMBEDDED_MODEL, resolve_base_model

    folder = tmp_path_factory.mktemp("tiny-llama")
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
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_train_config(data: Path | str, base: Path, output: Path, **overrides):
    from patentclf.training.trainer import TrainConfig

    options = dict(
        data=str(data),
        base_model=str(base),
        output_dir=str(output),
        max_length=64,
        epochs=8,
        batch_size=16,
        learning_rate=5e-3,
        lora_r=8,
        lora_dropout=0.0,
        precision="fp32",
        seed=0,
    )
    options.update(overrides)
    return TrainConfig(**options)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, toy_data, tiny_base_model) -> Path:
    """A bundle trained for a few dozen steps on the toy task (reaches high accuracy)."""
    from patentclf.training.trainer import train

    output = tmp_path_factory.mktemp("tiny-bundle") / "model"
    return train(tiny_train_config(toy_data, tiny_base_model, output), progress=False)


@pytest.fixture(scope="session")
def tiny_hierarchy_bundle(tmp_path_factory, toy_hierarchy_data, tiny_base_model) -> Path:
    """A bundle with the hierarchy heads, the TF-IDF partner and calibration, trained on the toy task."""
    from patentclf.training.trainer import train

    output = tmp_path_factory.mktemp("tiny-hierarchy-bundle") / "model"
    config = tiny_train_config(toy_hierarchy_data, tiny_base_model, output, prefix_loss_weight=0.5, head_learning_rate=1e-2)
    return train(config, progress=False)


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    from patentclf.model.bundle import default_model_dir

    path = default_model_dir()
    if not (path / "patentclf.json").is_file():
        pytest.fail(f"the shipped model is missing from {path}")
    return path


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of our own for the session (see tests/pg_server.py)."""
    from tests.pg_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package, as .ci/run does")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres.create_database()
