"""Peak memory: training a few steps and serving (load a bundle + predict), each in a fresh process.

    .venv/bin/python bench/memory.py                     # the shipped model if present
    .venv/bin/python bench/memory.py --model DIR

Peak RSS is the process's high-water mark (getrusage), so each measurement runs in its own child
process: training with the original recipe (fp32, padded to 256), training with `patentclf train`'s
path (the shipped model's LoRA recipe when it is there), and serving (`Classifier.load` + predicting
--rows texts in the default batches). On CUDA the allocator's peak is shown too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, other_load, peak_rss_mb, rss_mb, table, weights_dtype


def _cuda_peak() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def child_train(path: str, model_dir: str | None, steps: int, base_model: str) -> dict:
    from transformers import DataCollatorWithPadding, Trainer

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.model.base import load_tokenizer, pick_device
    from patentclf.model.bundle import read_info
    from patentclf.training import trainer as training

    recipe = {}
    if model_dir and path == "new":  # the recipe the shipped bundle was trained with
        trained = read_info(model_dir).training
        saved = trained.model_dump() if trained else {}
        recipe = {
            k: saved[k]
            for k in (
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "lora_layers",
                "target_modules",
                "max_length",
                "batch_size",
                "base_model",
            )
            if k in saved
        }
    options = {"base_model": base_model, "max_length": 256, "batch_size": 8, **recipe, "seed": 0}
    if path == "baseline":
        options.update(precision="fp32", group_by_length=False)
    config = training.TrainConfig(**options)
    device = pick_device()
    precision = training._precision(config, device)
    tokenizer = load_tokenizer(config.base_model)
    split = stratified_subset(load_split("bundled", "train"), steps * config.batch_size, seed=0)
    model = training.build_model(config, tokenizer, precision, None if path == "baseline" else device)
    loaded = rss_mb()
    collator = (
        DataCollatorWithPadding(tokenizer, padding="max_length", max_length=config.max_length)
        if path == "baseline"
        else training.data_collator(tokenizer)
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = training.training_arguments(
            config,
            precision,
            device,
            tmp,
            progress=False,
            max_steps=steps,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            logging_steps=10**6,
            warmup_steps=0,
            **({"optim": "adamw_torch"} if path == "baseline" else {}),
        )
        Trainer(
            model=model, args=args, train_dataset=training._tokenized(split, tokenizer, config), data_collator=collator
        ).train()
    lora = f"r{config.lora_r}, {'top ' + str(config.lora_layers) if config.lora_layers else 'all'} layers"
    return {
        "what": f"train {path}",
        "detail": f"{config.base_model}, {precision}, batch {config.batch_size}, {config.max_length} tokens, LoRA {lora}, {steps} steps",
        "after_load_mb": loaded,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": _cuda_peak(),
    }


def child_serve(model_dir: str, rows: int) -> dict:
    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier

    classifier = Classifier.load(model_dir)
    loaded = rss_mb()
    texts = stratified_subset(load_split("bundled", "test"), rows, seed=0).texts
    classifier.predict(texts)
    dtype = weights_dtype(classifier.engine.model)
    return {
        "what": "serve",
        "detail": f"Classifier.load + predict {rows} texts (default batches), {dtype}, {classifier.engine.device.type}",
        "after_load_mb": loaded,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": _cuda_peak(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="bundle (default: the shipped model, else an untrained one)")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, _, path = args.child.partition(":")
        model = str(args.model) if args.model else None
        result = child_train(path, model, args.steps, args.base_model) if kind == "train" else child_serve(model, args.rows)
        print("RESULT " + json.dumps(result))
        return

    from predict_speed import bench_model

    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = bench_model(args.model, Path(tmp), args.base_model)
        print(f"model: {model_dir}")
        results = []
        for child in ("train:baseline", "train:new", "serve"):
            started = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    child,
                    "--model",
                    str(model_dir),
                    "--steps",
                    str(args.steps),
                    "--rows",
                    str(args.rows),
                    "--base-model",
                    args.base_model,
                ],
                capture_output=True,
                text=True,
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"{child} failed:\n{done.stderr[-4000:]}")
            results.append(json.loads(lines[-1][7:]))
            print(f"{child}: peak RSS {results[-1]['peak_rss_mb']:.0f} MB ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"at end: {other_load()}")
    print()
    print(
        table(
            ["measured", "what ran", "RSS after load (MB)", "peak RSS (MB)", "CUDA peak (MB)"],
            [
                [
                    r["what"],
                    r["detail"],
                    f"{r['after_load_mb']:.0f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] is not None else "-",
                ]
                for r in results
            ],
        )
    )


if __name__ == "__main__":
    main()
