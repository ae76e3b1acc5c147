"""LoRA training speed and MFU at Llama-3.2-1B's exact shape (random weights), beside a plain baseline.

    python bench/gpu_train.py                      # on a CUDA GPU: 1B shape, 512 tokens, batch 16
    python bench/gpu_train.py --tiny               # a tiny config on CPU (what the test runs)

Speed does not depend on the weights' values, so the model is built from a `LlamaConfig` with
Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads, 8 key/value heads, intermediate 8192, vocab
128256, tied embeddings) and random weights: no download, no gated licence.

baseline  a plain `Trainer` + PEFT: fp32 weights, `bf16=True` (autocast), default AdamW, no options.
new       patentclf's path: bf16 base weights with fp32 LoRA/head (`models.add_lora`), the
          `TrainingArguments` that `patentclf train` builds (`training.training_arguments`: bf16
          autocast, fused AdamW, SDPA attention), plus --compile / --gradient-checkpointing if asked.
qlora     `patentclf train --quantize 4bit`'s path (`training.build_model`): the same random weights
          saved once, loaded back as 4-bit NF4 (bitsandbytes, `pip install -e .[cuda]`), LoRA on
          top. CUDA only; its CUDA peak beside the new path's is the memory QLoRA saves.

Both train the same LoRA (TrainConfig's defaults: r 8 on all seven projections of every layer) on
random token ids of exactly --seq-len tokens (no padding), batch --batch-size, --warmup untimed steps
then --steps timed steps; figures are medians over the timed steps.

Model FLOPs per token (what MFU counts; recomputation by gradient checkpointing is not counted):

    4 * N_frozen + 6 * N_trainable + 6 * L * s * d_attn

* N_frozen: the frozen base weights that take part in matmuls (every linear layer; not the
  embedding lookup). They cost 2 FLOPs per weight forward and 2 backward (the gradient with respect
  to their input, needed to reach the adapters below); no weight gradient is computed for them.
* N_trainable: LoRA A/B matrices and the score head: 2 forward + 2 input-gradient + 2 weight-gradient.
* attention scores and weighted sum (QK^T, AV): 4 * s * d_attn per token per layer forward with the
  causal half counted (2 * s * d_attn), times 3 for forward + backward.

The usual `6 * N * tokens` would count weight gradients that LoRA never computes; it overstates the
work by about 1.5x, so it is printed only as a note. MFU = model FLOPs per second / --peak-tflops
(default 790 bf16 TFLOP/s, the figure this project uses for an H100).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, median, peak_rss_mb, table


def model_config(tiny: bool):
    from transformers import LlamaConfig

    from patentclf.corpus.labels import ID2LABEL, LABEL2ID

    shape = (
        dict(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=1024,
        )
        if tiny
        else dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
        )
    )
    return LlamaConfig(
        **shape,
        max_position_embeddings=131072 if not tiny else 1024,
        tie_word_embeddings=True,
        rope_theta=500000.0,
        num_labels=9,
        id2label=ID2LABEL,
        label2id=LABEL2ID,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def flops_per_token(model, config, seq_len: int) -> tuple[float, float, int, int]:
    """(model FLOPs per trained token by the formula above, by the 6*N convention, N_frozen, N_trainable)."""
    import torch

    frozen = trainable = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):  # bitsandbytes' Linear4bit too
            # Counted by shape: a 4-bit weight's storage holds two values a byte.
            weights = module.in_features * module.out_features + (module.bias.numel() if module.bias is not None else 0)
            if module.weight.requires_grad:
                trainable += weights
            else:
                frozen += weights
    d_attn = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    attention = 6 * config.num_hidden_layers * seq_len * d_attn
    return 4 * frozen + 6 * trainable + attention, 6 * (frozen + trainable) + 2 * attention, frozen, trainable


class StepTimer:
    """A TrainerCallback that times each optimizer step (synchronising the GPU first)."""

    def __init__(self, cuda: bool):
        self.cuda, self.times, self._start = cuda, [], 0.0

    def _sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._start)

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def random_dataset(rows: int, seq_len: int, vocab: int, seed: int = 0):
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, seq_len), generator=generator)
    labels = torch.randint(0, 9, (rows,), generator=generator)
    return Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(), "labels": labels.tolist()}
    )


def trainer_options(device, args) -> dict:
    """The TrainingArguments every path shares: a fixed number of steps, no saving, no logging."""
    return dict(
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch_size,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        use_cpu=device.type == "cpu",
        seed=0,
        dataloader_num_workers=0,
    )


def build(name: str, config, device, args):
    """The model and TrainingArguments of one path."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from patentclf.model.base import LoraSettings, add_lora, supports_bf16
    from patentclf.training import trainer as training

    lora = training.TrainConfig()  # the LoRA settings `patentclf train` uses by default
    bf16 = supports_bf16(device)
    common_args = trainer_options(device, args)
    torch.manual_seed(0)
    if name == "baseline":
        with torch.device(device):
            model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=lora.lora_r,
                lora_alpha=lora.lora_alpha,
                lora_dropout=lora.lora_dropout,
                target_modules=lora.target_modules,
            ),
        )
        return model, TrainingArguments(output_dir=args.tmp, bf16=bf16, **common_args), "fp32 + autocast" if bf16 else "fp32"
    precision = "bf16" if bf16 else "fp32"
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(
            config, dtype=torch.bfloat16 if bf16 else torch.float32, attn_implementation="sdpa"
        )
    model = add_lora(
        model, LoraSettings(r=lora.lora_r, alpha=lora.lora_alpha, dropout=lora.lora_dropout, target_modules=lora.target_modules)
    )
    train_config = training.TrainConfig(
        batch_size=args.batch_size, gradient_checkpointing=args.gradient_checkpointing, torch_compile=args.compile
    )
    trainer_args = training.training_arguments(
        train_config,
        precision,
        device,
        args.tmp,
        progress=False,
        eval_strategy="no",
        load_best_model_at_end=False,
        warmup_steps=0,
        **common_args,
    )
    return model, trainer_args, "bf16 weights, fp32 LoRA" if bf16 else "fp32"


def build_qlora(config, device, args):
    """`patentclf train --quantize 4bit` on the random 1B-shaped weights (saved to disk once)."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForSequenceClassification

    from patentclf.training import trainer as training

    folder = Path(args.tmp) / "random-base"
    if not folder.exists():
        torch.manual_seed(0)
        with torch.device(device):
            AutoModelForSequenceClassification.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    train_config = training.TrainConfig(
        base_model=str(folder),
        batch_size=args.batch_size,
        quantize="4bit",
        gradient_checkpointing=args.gradient_checkpointing,
        torch_compile=args.compile,
    )
    model = training.build_model(train_config, SimpleNamespace(pad_token_id=config.pad_token_id), "bf16", device)
    trainer_args = training.training_arguments(
        train_config,
        "bf16",
        device,
        args.tmp,
        progress=False,
        eval_strategy="no",
        load_best_model_at_end=False,
        warmup_steps=0,
        **trainer_options(device, args),
    )
    return model, trainer_args, "4-bit NF4 base, fp32 LoRA"


def run(name: str, config, device, args) -> dict:
    import torch
    from transformers import Trainer

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, trainer_args, weights = build_qlora(config, device, args) if name == "qlora" else build(name, config, device, args)
    per_token, per_token_6n, frozen, trainable = flops_per_token(model, config, args.seq_len)
    dataset = random_dataset((args.warmup + args.steps) * args.batch_size, args.seq_len, config.vocab_size)
    timer = StepTimer(device.type == "cuda")
    Trainer(model=model, args=trainer_args, train_dataset=dataset, callbacks=[timer]).train()
    step = median(timer.times[args.warmup :])
    tokens_per_s = args.batch_size * args.seq_len / step
    result = {
        "path": name,
        "weights": weights,
        "optimizer": str(getattr(trainer_args.optim, "value", trainer_args.optim)),
        "step_s": step,
        "samples_per_s": args.batch_size / step,
        "tokens_per_s": tokens_per_s,
        "model_tflops_per_s": per_token * tokens_per_s / 1e12,
        "mfu": per_token * tokens_per_s / (args.peak_tflops * 1e12),
        "mfu_6n_convention": per_token_6n * tokens_per_s / (args.peak_tflops * 1e12),
        "n_frozen": frozen,
        "n_trainable": trainable,
        "flops_per_token": per_token,
        "cuda_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }
    del model
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny Llama on whatever device is there (CPU in tests)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per row (default 512; 64 with --tiny)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default 16; 2 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 2 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; 1 with --tiny)")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the accelerator's dense bf16 peak")
    parser.add_argument("--compile", action="store_true", help="new path with torch.compile")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="new path with gradient checkpointing")
    parser.add_argument(
        "--paths", default=None, help="comma-separated baseline,new,qlora (default: all three on CUDA, baseline,new elsewhere)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    for option, full, tiny in (("seq_len", 512, 64), ("batch_size", 16, 2), ("steps", 20, 2), ("warmup", 5, 1)):
        if getattr(args, option) is None:
            setattr(args, option, tiny if args.tiny else full)

    from patentclf.model.base import pick_device

    device = pick_device()
    if device.type != "cuda" and not args.tiny:
        parser.error("the full Llama-3.2-1B shape needs a CUDA GPU; use --tiny on CPU")
    if args.paths is None:
        args.paths = "baseline,new,qlora" if device.type == "cuda" else "baseline,new"
    if "qlora" in args.paths.split(",") and device.type != "cuda":
        parser.error("the qlora path needs a CUDA GPU (bitsandbytes 4-bit)")
    config = model_config(args.tiny)
    print(f"machine: {machine()}")
    print(
        f"model: {'tiny Llama' if args.tiny else 'Llama-3.2-1B shape'} (hidden {config.hidden_size}, {config.num_hidden_layers} layers, "
        f"{config.num_attention_heads} heads / {config.num_key_value_heads} kv, intermediate {config.intermediate_size}, vocab {config.vocab_size}), "
        f"random weights; {args.seq_len} tokens x batch {args.batch_size}; {args.warmup} warm-up + {args.steps} timed steps; device {device.type}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for name in args.paths.split(","):
            results.append(run(name, config, device, args))
            print(f"{name}: {results[-1]['samples_per_s']:.2f} samples/s", flush=True)
    base = next((r for r in results if r["path"] == "baseline"), None)
    rows = []
    for r in results:
        rows.append(
            [
                r["path"],
                r["weights"],
                r["optimizer"],
                f"{r['samples_per_s']:.2f}",
                f"{r['tokens_per_s']:,.0f}",
                f"{r['model_tflops_per_s']:.2f}",
                f"{r['mfu']:.1%}",
                f"{r['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-",
                f"{r['cuda_peak_gib']:.1f}" if r["cuda_peak_gib"] is not None else "-",
            ]
        )
    print()
    print(
        table(
            [
                "path",
                "weights",
                "optimizer",
                "samples/s",
                "tokens/s",
                "model TFLOP/s",
                f"MFU (of {args.peak_tflops:g})",
                "vs baseline",
                "CUDA peak GiB",
            ],
            rows,
        )
    )
    r = results[-1]
    print(
        f"N_frozen {r['n_frozen'] / 1e6:.1f} M, N_trainable {r['n_trainable'] / 1e6:.2f} M, model FLOPs per token {r['flops_per_token'] / 1e9:.2f} G "
        f"(4*N_frozen + 6*N_trainable + 6*L*s*d_attn); the 6*N convention would report MFU {r['mfu_6n_convention']:.1%} for the last path"
    )
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": device.type,
                    "tiny": args.tiny,
                    "seq_len": args.seq_len,
                    "batch_size": args.batch_size,
                    "machine": machine(),
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
