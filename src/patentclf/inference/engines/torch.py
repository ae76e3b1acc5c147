"""The torch engine: a bundle's merged model in this process, its device, precision and compile,
length-bucketed batches and the forward pass."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch

from patentclf.model.base import attention_implementation, pick_device, supports_bf16
from patentclf.model.bundle import load_bundle
from patentclf.model.heads import last_token_positions

PRECISIONS = ("auto", "bf16", "fp32")

# On CPU a batch holds at most this many (padded) tokens: larger batches spill the activations out of
# the cache and run slower per token (on the 2-core EPYC dev machine, SmolLM2 ran 3x256 tokens 27%
# faster per token than 4x256, and 8x138 faster than 12x138).
CPU_BATCH_TOKENS = 800
# Batches are padded to a multiple of this many tokens. oneDNN (bf16 on CPU) builds and caches a kernel
# for every input shape it meets: with exact-length padding every batch is a new shape, and a service's
# memory grew by ~3.5 MB per new shape (tiny model) without levelling off. Rounded lengths keep the
# shapes few (8 rows x 8 lengths at 256 tokens), so the caches fill once and then hit.
PAD_MULTIPLE = 32


def padded_length(length: int) -> int:
    """The length a row of ``length`` tokens is padded to in a batch (a multiple of ``PAD_MULTIPLE``)."""
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


class TorchEngine:
    """``logits(windows)``: the raw outputs of a loaded ``*ForSequenceClassification`` model;
    ``outputs(windows)``: the same with each window's representation, the hidden state its heads read."""

    def __init__(self, model, tokenizer, device: torch.device, *, compile: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # the unmasked fast path below relies on it
        self.device = device
        self.outputs = int(model.config.num_labels)
        self.batch_tokens = CPU_BATCH_TOKENS if device.type == "cpu" else None
        self.default_batch_size = 8 if device.type == "cpu" else 32
        # Decoder classifiers (Llama, Mistral, Qwen, ... *ForSequenceClassification) are a causal
        # backbone `.model` plus a linear `.score` read at the last real token.
        self.backbone = model.model if hasattr(model, "model") and hasattr(model, "score") else None
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attention_implementation(device))
        if compile:
            if self.backbone is not None:
                self.backbone = torch.compile(self.backbone, dynamic=True)
            else:
                self.model = torch.compile(model, dynamic=True)

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        precision: str = "auto",
        compile: bool = False,
        quantize: str | None = None,
    ) -> "TorchEngine":
        """The bundle's merged model on ``device`` (default: the best one here). ``precision``: auto
        (bf16 where the hardware has native bf16), bf16 or fp32; ``quantize``: 4bit or 8bit base
        weights (default: what the bundle was trained with)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
        target = torch.device(device) if device else pick_device()
        use_bf16 = precision == "bf16" or (precision == "auto" and supports_bf16(target))
        options = {"quantize": quantize} if quantize else {}
        model, tokenizer, _ = load_bundle(path, dtype=torch.bfloat16 if use_bf16 else torch.float32, device=target, **options)
        return cls(model, tokenizer, target, compile=compile)

    def batches(self, lengths: Sequence[int], batch_size: int | None = None) -> list[list[int]]:
        """Indices grouped into batches of similar length, shortest first: at most ``batch_size`` rows
        and, on CPU, at most ``CPU_BATCH_TOKENS`` padded tokens (a single longer row goes alone)."""
        batch_size = batch_size or self.default_batch_size
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        for index in order:
            group = groups[-1] if groups else None
            # Rows come shortest first, so the newcomer sets the padded length of its group.
            fits = (
                group is not None
                and len(group) < batch_size
                and (self.batch_tokens is None or (len(group) + 1) * padded_length(lengths[index]) <= self.batch_tokens)
            )
            if fits:
                group.append(index)
            else:
                groups.append([index])
        return groups

    @torch.inference_mode()
    def logits(self, windows: list[list[int]]) -> np.ndarray:
        """float32 (len(windows), outputs) raw logits, in the order of ``windows`` (one model call)."""
        return self.outputs_of(windows)[0]

    @torch.inference_mode()
    def outputs_of(self, windows: list[list[int]]) -> tuple[np.ndarray, np.ndarray | None]:
        """float32 raw logits and representations (len(windows), hidden size), from one model call; the
        representation is ``None`` for a model that is not a decoder classifier."""
        logits, hidden = self.forward(windows)
        return logits.float().cpu().numpy(), None if hidden is None else hidden.float().cpu().numpy()

    def forward(self, windows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self.tokenizer.pad({"input_ids": windows}, pad_to_multiple_of=PAD_MULTIPLE, return_tensors="pt")
        if self.backbone is None:
            return self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits, None
        # Padding is on the right and attention is causal, so no real token ever attends to a pad:
        # the attention mask can be left out (same numbers; SDPA then takes its causal kernel and no
        # mask is built), and each row is read at its own last token, as transformers' classifier does.
        hidden = self.backbone(input_ids=batch["input_ids"].to(self.device)).last_hidden_state
        last = last_token_positions(torch.tensor([len(w) for w in windows], device=self.device))
        # The hidden state the score layer reads: the patent's representation for the index (free).
        pooled = hidden[torch.arange(len(windows), device=self.device), last]
        return self.model.score(pooled), pooled

    @staticmethod
    def probabilities(logits: np.ndarray, parts: dict[str, slice], independent: Collection[str]) -> dict[str, np.ndarray]:
        """Softmax over each part of the outputs, sigmoid for the ``independent`` ones, computed by
        torch (numpy's exp differs from torch's in the last bit, and the shipped predictions are
        torch's to 1e-6)."""
        table = torch.from_numpy(logits)
        return {
            name: (torch.sigmoid(table[:, part]) if name in independent else torch.softmax(table[:, part], dim=-1)).numpy()
            for name, part in parts.items()
        }

    def check(self) -> None:
        """An in-process model cannot go away: nothing to check."""
