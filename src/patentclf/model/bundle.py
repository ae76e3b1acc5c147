"""A model bundle on disk: LoRA adapter with its head, tokenizer, ``patentclf.json`` and a model card.

The bundle names its base model (``smollm2-135m``, a hub id or a folder), so it stays a few MB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from patentclf.corpus.labels import SECTIONS
from patentclf.model.base import EMBEDDED_MODELS, ModelError

INFO_FILE = "patentclf.json"
ADAPTER_FILE = "adapter_model.safetensors"
FORMAT_VERSION = 1


def default_model_dir() -> Path:
    """The bundle shipped inside the package: the model used when none is named."""
    return Path(str(resources.files("patentclf") / "resources" / "default-model"))


def label_table() -> list[dict]:
    return [{"id": s.id, "code": s.code, "name": s.name} for s in SECTIONS]


class HeadsInfo(BaseModel):
    classes: list[str] = []
    subclasses: list[str] = []


class BundleInfo(BaseModel):
    """What ``patentclf.json`` holds: the label table, the base model, how text is read, the heads,
    the run that made it, its figures and its calibration (``calibration.Calibration.to_dict``).
    Keys it does not name (a newer patentclf's) are kept as they are."""

    model_config = ConfigDict(extra="allow")

    format: int = Field(1, ge=1)  # bundles written before the format was recorded read as format 1
    labels: list[dict]
    base_model: str
    base_model_weights: str | None = None
    max_length: int = Field(256, gt=0)
    normalize: Literal["bigpatent", "none"] = "bigpatent"
    heads: HeadsInfo | None = None
    training: dict = {}
    data: dict = {}
    metrics: dict = {}
    baselines: dict = {}
    versions: dict = {}
    command: str | None = None
    calibration: dict = {}


def read_info(bundle_dir: str | Path) -> dict:
    """The bundle's ``patentclf.json``, checked against ``BundleInfo`` and its format version (a
    ModelError says what is wrong in one line); returned as the dict it is on disk."""
    path = Path(bundle_dir) / INFO_FILE
    if not path.is_file():
        raise ModelError(f"{bundle_dir}: not a patentclf model bundle (no {INFO_FILE})")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(info, dict):
        raise ModelError(f"{path}: not a bundle description (a JSON object)")
    found = info.get("format", 1)
    if isinstance(found, int) and found > FORMAT_VERSION:
        raise ModelError(
            f"{path}: bundle format {found} was written by a newer patentclf; this one reads formats up to "
            f"{FORMAT_VERSION}: upgrade patentclf (pip install -U patentclf)"
        )
    try:
        BundleInfo.model_validate(info)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ModelError(f"{path}: {where}: {first['msg']}") from None
    if [s.get("code") for s in info["labels"]] != [s.code for s in SECTIONS]:
        raise ModelError(f"{path}: its label table differs from the nine CPC sections A..H, Y")
    return info


def write_info(bundle_dir: str | Path, info: dict) -> None:
    path = Path(bundle_dir) / INFO_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def model_digest(bundle_dir: str | Path) -> str:
    """The first 12 hex digits of the adapter's sha256: the weights' identity, wherever the bundle lies."""
    adapter = Path(bundle_dir) / ADAPTER_FILE
    return hashlib.sha256(adapter.read_bytes()).hexdigest()[:12] if adapter.is_file() else "unknown"


def model_version(bundle_dir: str | Path) -> str:
    """``<folder name>@<model_digest>``: changes whenever the weights do."""
    return f"{Path(bundle_dir).resolve().name}@{model_digest(bundle_dir)}"


def save_bundle(
    peft_model, tokenizer, info: dict, out_dir: str | Path, *, finish: Callable[[Path, dict], dict] | None = None
) -> Path:
    """Write adapter + head, tokenizer and info; replaces ``out_dir`` only once all is written.
    ``finish(folder, info) -> info`` runs on the written folder before it replaces ``out_dir`` (training
    calibrates and measures the bundle there and writes its card)."""
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(staging)
    # An embedded base model's tokenizer installs with it (Gemma's is 33 MB): the bundle keeps only
    # its own tokenizer for other bases, whose tokenizer could change on the hub.
    if info["base_model"] not in EMBEDDED_MODELS:
        tokenizer.save_pretrained(staging)
    name_base_model(staging, info["base_model"])
    info = {"format": FORMAT_VERSION, "labels": label_table(), **info}
    write_info(staging, info)
    if finish is not None:
        info = finish(staging, info)
        write_info(staging, info)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def name_base_model(bundle_dir: Path, reference: str) -> None:
    """PEFT records the folder it loaded the base from (a path on the training machine, e.g. the
    converted cache of an embedded model); record the reference instead (``gemma3-270m``, a hub id),
    which every machine resolves for itself on load."""
    config_path = bundle_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = reference
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def recorded_quantization(info: dict) -> str | None:
    """The quantization a bundle's adapter was trained over (4bit | 8bit), or None."""
    return info.get("quantize") or info.get("training", {}).get("quantize")


def load_bundle(bundle_dir: str | Path, *, dtype=None, device=None, merge: bool = True, quantize: str | None = None):
    """Load (model, tokenizer, info); the LoRA weights are merged into the base for fast inference.

    ``quantize``: 4bit | 8bit loads the base through bitsandbytes, "none" loads it in full
    precision, None (the default) does what the bundle recorded (a QLoRA bundle's base is quantized
    again, as in training). Over a quantized base the adapter stays unmerged (merging would round it
    into 4/8-bit weights): ``merge`` then returns the base model with the adapter layers in place,
    and ``dtype`` applies to the layers that are not quantized."""
    import torch
    from transformers import AutoTokenizer

    from patentclf.model.base import (
        NO_QUANTIZE,
        QUANTIZE_KINDS,
        bitsandbytes_hidden,
        load_classification_model,
        load_tokenizer,
        pick_device,
        quiet_transformers,
    )
    from patentclf.model.heads import HeadLayout

    bundle_dir = Path(bundle_dir)
    info = read_info(bundle_dir)
    kind = recorded_quantization(info) if quantize is None else quantize
    if kind not in (*QUANTIZE_KINDS, NO_QUANTIZE, None):
        raise ModelError(f"unknown quantization {kind!r}: use 4bit, 8bit or none")
    kind = None if kind == NO_QUANTIZE else kind
    target = torch.device(device) if device is not None else (pick_device() if kind else None)
    if (bundle_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(bundle_dir)
    else:  # an embedded base model's own tokenizer (see save_bundle)
        tokenizer = load_tokenizer(info["base_model"])
    with quiet_transformers():
        base = load_classification_model(
            info["base_model"],
            pad_token_id=tokenizer.pad_token_id,
            # Merging is done in fp32; over a quantized base, the layers it leaves (embeddings,
            # norms, head) are loaded in ``dtype`` straight away: nothing is merged into them.
            dtype=(dtype or torch.float32) if kind else torch.float32,
            num_labels=HeadLayout.from_info(info).size,
            quantize=kind,
            device=target,
        )
        with bitsandbytes_hidden() if kind is None else contextlib.nullcontext():
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, bundle_dir)
    if kind:  # bitsandbytes placed the weights on the device; they cannot be cast
        model = model.get_base_model() if merge else model
        return model.eval(), tokenizer, info
    if merge:
        model = model.merge_and_unload()
    model.eval()
    if dtype is not None:
        model = model.to(dtype)
    if target is not None:
        model = model.to(target)
    return model, tokenizer, info


def load_bundle_tokenizer(bundle_dir: str | Path, info: dict):
    """The bundle's tokenizer: its own copy, or an embedded base model's (see save_bundle)."""
    from transformers import AutoTokenizer

    from patentclf.model.base import load_tokenizer

    if (Path(bundle_dir) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(bundle_dir)
    return load_tokenizer(info["base_model"])
