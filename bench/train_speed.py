"""Training samples/s: the original recipe against what `patentclf train` does, in the same run.

    .venv/bin/python bench/train_speed.py            # bundled data, 256 rows, SmolLM2-135M (~20 min)
    .venv/bin/python bench/train_speed.py --rows 64   # quicker; smaller subsets pad more (see the last line)

baseline  the original project's recipe: fp32 weights, every row padded to --max-length, random
          order, batch 8, plain (unfused) AdamW.
new       `patentclf train`'s path: bf16 base weights with fp32 LoRA/head under bf16 autocast where
          the hardware has native bf16, length-grouped batches with dynamic padding (to a multiple
          of 8), fused AdamW, matmul ("eager") attention on CPU and SDPA on GPUs.
shipped   the new path with the shipped model's LoRA recipe (r 16 on the top 16 of 30 layers: a
          shorter backward pass); a recipe change, so it is shown apart from the like-for-like ratio.

Both baseline and new use the same model and the same LoRA settings (TrainConfig's defaults), so the
ratio measures the training path only. Each path trains one warm-up epoch over the same fixed,
stratified subset of rows, then --repeats timed epochs; samples/s is rows / epoch time, median of
the timed epochs (a whole epoch, so length-grouped and random order do the same work).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import common  # noqa: F401  (sets offline mode and the import path)
from common import machine, median, other_load, table


class EpochTimer:
    """A TrainerCallback that times each epoch."""

    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)

    # The remaining TrainerCallback hooks: nothing to do.
    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


class CountingCollator:
    """Wraps a collator and counts the token positions it hands to the model (padding included)."""

    def __init__(self, inner):
        self.inner = inner
        self.positions = 0
        self.real = 0

    def __call__(self, features):
        batch = self.inner(features)
        self.positions += batch["input_ids"].numel()
        self.real += int(batch["attention_mask"].sum())
        return batch


def run_path(name: str, split, tokenizer, device, args) -> dict:
    import torch
    from transformers import DataCollatorWithPadding, Trainer

    from patentclf.training import trainer as training

    common_options = dict(
        data=args.data, base_model=args.base_model, max_length=args.max_length, batch_size=args.batch_size, seed=0
    )
    if name == "baseline":
        config = training.TrainConfig(**common_options, precision="fp32", group_by_length=False)
        precision = "fp32"
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.max_length)
        path_overrides = dict(optim="adamw_torch")
    else:
        extra = dict(lora_r=16, lora_alpha=32, lora_dropout=0.05, lora_layers=16) if name == "shipped" else {}
        config = training.TrainConfig(**common_options, **extra)
        precision = training._precision(config, device)
        collator = training.data_collator(tokenizer)
        path_overrides = {}
    torch.manual_seed(0)
    model = training.build_model(config, tokenizer, precision, None if name == "baseline" else device)
    dataset = training._tokenized(split, tokenizer, config)
    timer, counting = EpochTimer(), CountingCollator(collator)
    with tempfile.TemporaryDirectory() as tmp:
        trainer_args = training.training_arguments(
            config,
            precision,
            device,
            tmp,
            progress=False,
            num_train_epochs=1 + args.repeats,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            logging_steps=10**6,
            warmup_steps=0,
            **path_overrides,
        )
        trainer = Trainer(model=model, args=trainer_args, train_dataset=dataset, data_collator=counting, callbacks=[timer])
        trainer.train()
    timed = timer.times[1:]  # epoch 0 is the warm-up
    rates = [len(split) / t for t in timed]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    epochs = 1 + args.repeats
    return {
        "name": name,
        "precision": precision,
        "optimizer": trainer_args.optim.value if hasattr(trainer_args.optim, "value") else str(trainer_args.optim),
        "order": "length-grouped" if config.group_by_length else "random",
        "lora": f"r{config.lora_r} {'top ' + str(config.lora_layers) if config.lora_layers else 'all'} layers, {len(config.target_modules)} proj",
        "trainable": trainable,
        "tokens_per_row": counting.positions / epochs / len(split),
        "real_tokens_per_row": counting.real / epochs / len(split),
        "rates": rates,
        "median": median(rates),
    }


def full_split_padding(split, tokenizer, config) -> float:
    """Padded tokens per row that `patentclf train`'s batches carry over a whole split: transformers'
    length grouping sorts within mega-batches of up to 50 batches, but of only len/4 rows on small
    subsets, so the timed subset pads more than a full run does."""
    import math

    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from patentclf.training import trainer as training

    lengths = [len(ids) for ids in training._tokenized(split, tokenizer, config)["input_ids"]]
    order = get_length_grouped_indices(lengths, config.batch_size, generator=torch.Generator().manual_seed(0))
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    padded = sum(len(b) * 8 * math.ceil(max(lengths[i] for i in b) / 8) for b in batches)
    return padded / len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="bundled")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument(
        "--rows",
        type=int,
        default=256,
        help="fixed stratified subset of the training rows (under ~1,600 rows transformers groups lengths less well than in a full run)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--paths", default="baseline,new,shipped", help="comma-separated: baseline,new,shipped")
    args = parser.parse_args()

    import torch

    from patentclf.corpus import data as data_mod
    from patentclf.model.base import load_tokenizer, pick_device

    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")
    split = data_mod.stratified_subset(data_mod.load_split(args.data, "train"), args.rows, seed=0)
    tokenizer = load_tokenizer(args.base_model)
    device = pick_device()
    torch.manual_seed(0)
    results = []
    for name in args.paths.split(","):
        started = time.perf_counter()
        result = run_path(name, split, tokenizer, device, args)
        results.append(result)
        print(
            f"{name}: {', '.join(f'{r:.2f}' for r in result['rates'])} samples/s per timed epoch ({time.perf_counter() - started:.0f} s in all)",
            flush=True,
        )
    print(f"at end: {other_load()}")

    base = next((r["median"] for r in results if r["name"] == "baseline"), None)
    rows = []
    for r in results:
        ratio = f"{r['median'] / base:.2f}x" if base else "-"
        rows.append(
            [
                r["name"],
                r["precision"],
                r["order"],
                r["optimizer"],
                r["lora"],
                f"{r['trainable'] / 1e6:.2f} M",
                f"{r['tokens_per_row']:.0f} ({r['real_tokens_per_row']:.0f} real)",
                f"{r['median']:.2f}",
                ratio,
            ]
        )
    print()
    print(
        f"training {args.base_model} on {args.data}: {len(split)} rows, batch {args.batch_size}, max length {args.max_length}, "
        f"median of {args.repeats} epochs after 1 warm-up epoch, device {device.type}"
    )
    print(table(["path", "precision", "order", "optimizer", "LoRA", "trainable", "tokens/row", "samples/s", "vs baseline"], rows))
    from patentclf.training import trainer as training

    whole = data_mod.load_split(args.data, "train")
    config = training.TrainConfig(
        data=args.data, base_model=args.base_model, max_length=args.max_length, batch_size=args.batch_size
    )
    print(
        f"over the whole {args.data} train split ({len(whole)} rows) the new path's batches carry "
        f"{full_split_padding(whole, tokenizer, config):.0f} tokens/row (the baseline: {args.max_length})"
    )


if __name__ == "__main__":
    main()
