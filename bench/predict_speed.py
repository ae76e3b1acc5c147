"""File prediction samples/s: a one-text-at-a-time fp32 loop against `Classifier.predict`, same run.

    .venv/bin/python bench/predict_speed.py                 # the shipped model if present
    .venv/bin/python bench/predict_speed.py --model DIR     # any bundle

baseline  the original project's way: the PEFT model unmerged, fp32, one text per forward pass.
new       `Classifier.predict` (what `patentclf predict --input FILE` runs): LoRA merged into the
          base, bf16 weights where the hardware has native bf16, batches of similar lengths (on CPU at
          most 8 rows and 800 padded tokens), right padding read without an attention mask, and
          matmul attention on CPU.
compiled  the same with `--compile` (torch.compile); its one-off compile time is printed apart.
no index  `Classifier.predict` without the bundle's patent index (no groups, no evidence): what the
          index search and the group votes cost.

Without a shipped model and without --model, a fresh (untrained) LoRA over SmolLM2-135M is saved as a
bundle: speed does not depend on the weights' values. Texts: a fixed stratified subset of the bundled
test split. Each path runs once to warm up, then --repeats timed passes over all rows; the table shows
medians, their ratio, and how often the two paths agree on the label.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, median, other_load, table, weights_dtype


def untrained_bundle(folder: Path, base_model: str = "smollm2-135m", max_length: int = 256) -> Path:
    """A LoRA over the base model with a random head, saved as a bundle (same shapes as a trained one)."""
    import torch

    from patentclf.model.base import LoraSettings, add_lora, load_classification_model, load_tokenizer
    from patentclf.model.bundle import BundleInfo, save_bundle
    from patentclf.training.trainer import ALL_PROJECTIONS

    torch.manual_seed(0)
    tokenizer = load_tokenizer(base_model)
    model = add_lora(
        load_classification_model(base_model, pad_token_id=tokenizer.pad_token_id),
        LoraSettings(r=16, alpha=32, target_modules=list(ALL_PROJECTIONS), layers=16),
    )
    info = BundleInfo.new(
        base_model=base_model, max_length=max_length, normalize="bigpatent", metrics={}, note="untrained, for benchmarks"
    )
    return save_bundle(model, tokenizer, info, folder)


def bench_model(model: Path | None, scratch: Path, base_model: str = "smollm2-135m") -> Path:
    """The bundle a benchmark measures: the one named, else the shipped model, else an untrained one
    saved under ``scratch``."""
    from patentclf.model.bundle import default_model_dir

    if model is not None:
        return model
    shipped = default_model_dir()
    return shipped if (shipped / "patentclf.json").is_file() else untrained_bundle(scratch / "untrained", base_model)


def baseline_pass(model, tokenizer, texts: list[str], max_length: int, normalize: bool) -> list[list[float]]:
    import torch

    from patentclf.corpus.data import to_bigpatent_form

    out = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(
                to_bigpatent_form(text) if normalize else text, truncation=True, max_length=max_length, return_tensors="pt"
            )
            out.append(torch.softmax(model(**encoded).logits[0, :9].float(), dim=-1).tolist())  # the main-section head
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=None, help="bundle folder (default: the shipped model, else an untrained one)"
    )
    parser.add_argument("--data", default="bundled")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="Classifier.predict batch size (default: the CLI's)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (it takes a minute to compile)")
    args = parser.parse_args()

    import torch

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier
    from patentclf.model.bundle import load_bundle

    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = bench_model(args.model, Path(tmp))
        print(f"model: {model_dir}")
        texts = stratified_subset(load_split(args.data, "test"), args.rows, seed=0).texts

        base_model, tokenizer, info = load_bundle(model_dir, dtype=torch.float32, merge=False)
        max_length, normalize = info.max_length, info.normalized
        baseline_pass(base_model, tokenizer, texts[:4], max_length, normalize)
        base_rates, base_probs = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            base_probs = baseline_pass(base_model, tokenizer, texts, max_length, normalize)
            base_rates.append(len(texts) / (time.perf_counter() - start))
        print(f"baseline: {', '.join(f'{r:.2f}' for r in base_rates)} samples/s", flush=True)
        del base_model

        def timed(classifier) -> tuple[list[float], list]:
            rates, predictions = [], None
            for _ in range(args.repeats):
                start = time.perf_counter()
                predictions = classifier.predict(texts, batch_size=args.batch_size)
                rates.append(len(texts) / (time.perf_counter() - start))
            return rates, predictions

        classifier = Classifier.load(model_dir)
        dtype = weights_dtype(classifier.engine.model)
        device = classifier.engine.device.type
        classifier.predict(texts[:4], batch_size=args.batch_size)
        new_rates, predictions = timed(classifier)
        print(f"new: {', '.join(f'{r:.2f}' for r in new_rates)} samples/s", flush=True)
        # The same without the patent index (no groups, no evidence): what the index search and the
        # group votes cost, side by side.
        index, plain_rates = classifier.index, []
        if index is not None:
            classifier.use_index(None)
            plain_rates, _ = timed(classifier)
            classifier.use_index(index)
            print(f"new without the index: {', '.join(f'{r:.2f}' for r in plain_rates)} samples/s", flush=True)
        # The LLM's own section head on the new path: like for like with the baseline (bf16, merged
        # LoRA, batching), where the whole answer also has TF-IDF, the pool and the confidence map.
        own_head = classifier.raw_outputs(texts, batch_size=args.batch_size)["section"]
        compiled_rates, compiled_predictions, compile_seconds = [], None, None
        if not args.no_compile:
            del classifier
            compiled = Classifier.load(model_dir, compile=True)
            start = time.perf_counter()
            compiled.predict(texts[:4], batch_size=args.batch_size)  # compiles here
            compile_seconds = time.perf_counter() - start
            compiled_rates, compiled_predictions = timed(compiled)
            print(
                f"compiled: {', '.join(f'{r:.2f}' for r in compiled_rates)} samples/s (compiling took {compile_seconds:.0f} s)",
                flush=True,
            )
    print(f"at end: {other_load()}")

    codes = list(predictions[0].probabilities)

    def agreement(predicted) -> str:
        agree = sum(max(range(9), key=b.__getitem__) == p.label_id for b, p in zip(base_probs, predicted)) / len(texts)
        diff = max(abs(b[i] - p.probabilities[c]) for b, p in zip(base_probs, predicted) for i, c in enumerate(codes))
        return f"same label as the baseline on {agree:.1%} of rows; largest probability difference {diff:.3f}"

    def head_agreement() -> str:
        agree = sum(max(range(9), key=b.__getitem__) == int(o.argmax()) for b, o in zip(base_probs, own_head)) / len(texts)
        diff = max(abs(b[i] - float(o[i])) for b, o in zip(base_probs, own_head) for i in range(9))
        return f"same label as the baseline on {agree:.1%} of rows; largest probability difference {diff:.3f}"

    b, n = median(base_rates), median(new_rates)
    batching = f"batches of {args.batch_size}" if args.batch_size else "default batches"
    rows = [
        ["baseline", "float32", "unmerged (PEFT)", "one text at a time", f"{b:.2f}", "1.00x"],
        ["new: Classifier.predict", dtype, "merged", f"{batching}, sorted by length", f"{n:.2f}", f"{n / b:.2f}x"],
    ]
    if plain_rates:
        p = median(plain_rates)
        rows.append(["new, no index (no groups or evidence)", dtype, "merged", "the same", f"{p:.2f}", f"{p / b:.2f}x"])
    if compiled_rates:
        c = median(compiled_rates)
        rows.append(
            [
                f"new + --compile ({compile_seconds:.0f} s once)",
                dtype,
                "merged",
                f"{batching}, sorted by length",
                f"{c:.2f}",
                f"{c / b:.2f}x",
            ]
        )
    print()
    print(f"predicting {len(texts)} rows of {args.data} test, median of {args.repeats} passes after a warm-up, device {device}")
    print(table(["path", "weights", "LoRA", "batching", "samples/s", "vs baseline"], rows))
    print(f"new, the LLM's own section head (like for like): {head_agreement()}")
    print(f"new, the whole answer (with TF-IDF, pooling and calibration, where the bundle has them): {agreement(predictions)}")
    if compiled_predictions:
        print(f"compiled, the whole answer: {agreement(compiled_predictions)}")


if __name__ == "__main__":
    main()
