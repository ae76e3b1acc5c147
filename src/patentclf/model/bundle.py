"""A model bundle on disk: LoRA adapter with its head, tokenizer, ``patentclf.json`` and a model card.

The bundle names its base model (``smollm2-135m``, a hub id or a folder), so it stays a few MB.
``BundleInfo`` is what ``patentclf.json`` holds, typed: everything reads the bundle through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_serializer, model_validator

from patentclf.corpus.labels import SECTIONS
from patentclf.model.base import EMBEDDED_MODELS, ModelError
from patentclf.model.train_config import TrainConfig

INFO_FILE = "patentclf.json"
ADAPTER_FILE = "adapter_model.safetensors"
FORMAT_VERSION = 1


def default_model_dir() -> Path:
    """The bundle shipped inside the package: the model used when none is named."""
    return Path(str(resources.files("patentclf") / "resources" / "default-model"))


def label_table() -> list[dict]:
    return [{"id": s.id, "code": s.code, "name": s.name} for s in SECTIONS]


class InfoPart(BaseModel):
    """A part of ``patentclf.json`` that is written back as it was read: keys it does not name (a newer
    patentclf's) are kept, the keys keep their order, and a field the file lacked is not added while it
    holds its default (an old bundle reads and writes back unchanged)."""

    model_config = ConfigDict(extra="allow")
    _keys: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keys(cls, data, handler):
        part = handler(data)
        if isinstance(data, dict):
            part._keys = list(data)
        return part

    @model_serializer(mode="wrap")
    def _as_read(self, handler) -> dict:
        out = handler(self)
        for name, field in type(self).model_fields.items():
            if name not in self.model_fields_set and getattr(self, name) == field.get_default(call_default_factory=True):
                out.pop(name, None)
        # The keys as they were given first, then those set since (in declaration order).
        return {**{key: out[key] for key in self._keys if key in out}, **out}


# Figures of one split: n, accuracy, macro_f1, ece, the hierarchy figures ... (evaluation.py names them).
Figures = dict[str, int | float]


class HeadsInfo(InfoPart):
    classes: list[str] = []
    subclasses: list[str] = []


class LabelInfo(InfoPart):
    id: int
    code: str
    name: str


class SplitInfo(InfoPart):
    """A split the bundle was trained or measured on."""

    source: str | None = None
    rows: int = 0
    labels: dict[str, int] = {}  # rows per section code


class TrainingInfo(TrainConfig, InfoPart):
    """The run that made the bundle: its ``TrainConfig`` (``precision`` as resolved; ``command`` is
    the bundle's own) and the facts of the run. Settings added since an old bundle was trained read
    as their defaults."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    device: str | None = None
    world_size: int | None = None
    train_rows: int | None = None
    best_checkpoint: str | None = None
    peak_memory_mb: dict[str, int] = {}  # process_rss, and cuda_allocated on a GPU
    log_history: list[dict] = []  # the Trainer's last log rows
    resumed_from: PreviousRun | None = None  # a continued bundle: what it was trained with before


class PreviousRun(InfoPart):
    """The bundle a run continued (its adapter's settings, such as LoRA rank and layers, come from
    there, not from this run's config): where it was, its run (less the log), figures and command."""

    bundle: str
    training: TrainingInfo | None = None
    metrics: dict[str, Figures] = {}
    command: str | None = None


class BundleInfo(InfoPart):
    """What ``patentclf.json`` holds: the label table, the base model, how text is read, the heads,
    the run that made it, its figures and its calibration (``calibration.Calibration.to_dict``)."""

    format: int = Field(1, ge=1)  # bundles written before the format was recorded read as format 1
    labels: list[LabelInfo]
    base_model: str
    base_model_weights: str | None = None
    max_length: int = Field(256, gt=0)
    heads: HeadsInfo | None = None
    normalize: Literal["bigpatent", "none"] = "bigpatent"
    training: TrainingInfo | None = None
    data: dict[str, SplitInfo] = {}
    metrics: dict[str, Figures] = {}  # per split name (and text form)
    versions: dict[str, str] = {}  # python, torch, transformers, peft
    command: str | None = None
    calibration: dict = {}  # as calibration.Calibration.from_dict reads it
    baselines: dict[str, Figures] = {}  # the TF-IDF partner's figures, per split name
    exported_from: dict | None = None  # a merged export: the bundle, its version and the dtype

    @classmethod
    def new(cls, **fields) -> "BundleInfo":
        """A new bundle's description: this format and the nine sections, then ``fields``."""
        return cls(format=FORMAT_VERSION, labels=label_table(), **fields)

    @property
    def normalized(self) -> bool:
        """Whether text is put in BIGPATENT form before tokenizing, as in training."""
        return self.normalize == "bigpatent"

    @property
    def quantization(self) -> str | None:
        """The quantization the adapter was trained over (4bit | 8bit), or None."""
        return (self.model_extra or {}).get("quantize") or (self.training.quantize if self.training else None)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def read_info(bundle_dir: str | Path) -> BundleInfo:
    """The bundle's ``patentclf.json``, checked against ``BundleInfo`` and its format version (a
    ModelError says what is wrong in one line)."""
    path = Path(bundle_dir) / INFO_FILE
    if not path.is_file():
        raise ModelError(f"{bundle_dir}: not a patentclf model bundle (no {INFO_FILE})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: not a bundle description (a JSON object)")
    found = raw.get("format", 1)
    if isinstance(found, int) and found > FORMAT_VERSION:
        raise ModelError(
            f"{path}: bundle format {found} was written by a newer patentclf; this one reads formats up to "
            f"{FORMAT_VERSION}: upgrade patentclf (pip install -U patentclf)"
        )
    try:
        info = BundleInfo.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ModelError(f"{path}: {where}: {first['msg']}") from None
    if [label.code for label in info.labels] != [s.code for s in SECTIONS]:
        raise ModelError(f"{path}: its label table differs from the nine CPC sections A..H, Y")
    return info


def write_info(bundle_dir: str | Path, info: BundleInfo) -> None:
    path = Path(bundle_dir) / INFO_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(info.to_json())
    tmp.replace(path)


def model_digest(bundle_dir: str | Path) -> str:
    """The first 12 hex digits of the adapter's sha256: the weights' identity, wherever the bundle lies."""
    adapter = Path(bundle_dir) / ADAPTER_FILE
    return hashlib.sha256(adapter.read_bytes()).hexdigest()[:12] if adapter.is_file() else "unknown"


def model_version(bundle_dir: str | Path) -> str:
    """``<folder name>@<model_digest>``: changes whenever the weights do."""
    return f"{Path(bundle_dir).resolve().name}@{model_digest(bundle_dir)}"


def staging_dir(out_dir: str | Path) -> Path:
    """An empty ``<out_dir>.partial`` beside ``out_dir``: a bundle is written there, then published."""
    staging = Path(out_dir).with_name(Path(out_dir).name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def write_bundle(peft_model, tokenizer, info: BundleInfo, folder: str | Path) -> Path:
    """Write adapter + head, tokenizer and info into ``folder``."""
    folder = Path(folder)
    peft_model.save_pretrained(folder)
    # An embedded base model's tokenizer installs with it (Gemma's is 33 MB): the bundle keeps only
    # its own tokenizer for other bases, whose tokenizer could change on the hub.
    if info.base_model not in EMBEDDED_MODELS:
        tokenizer.save_pretrained(folder)
    name_base_model(folder, info.base_model)
    write_info(folder, info)
    return folder


def publish(staging: str | Path, out_dir: str | Path) -> Path:
    """Put the finished bundle in ``staging`` at ``out_dir``, replacing what was there."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    Path(staging).rename(out_dir)
    return out_dir


def save_bundle(peft_model, tokenizer, info: BundleInfo, out_dir: str | Path) -> Path:
    """Write a bundle at ``out_dir``; replaces ``out_dir`` only once all is written."""
    return publish(write_bundle(peft_model, tokenizer, info, staging_dir(out_dir)), out_dir)


def name_base_model(bundle_dir: Path, reference: str) -> None:
    """PEFT records the folder it loaded the base from (a path on the training machine, e.g. the
    converted cache of an embedded model); record the reference instead (``gemma3-270m``, a hub id),
    which every machine resolves for itself on load."""
    config_path = bundle_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = reference
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_bundle(bundle_dir: str | Path, *, dtype=None, device=None, merge: bool = True, quantize: str | None = None):
    """Load (model, tokenizer, info); the LoRA weights are merged into the base for fast inference.

    ``quantize``: 4bit | 8bit loads the base through bitsandbytes, "none" loads it in full
    precision, None (the default) does what the bundle recorded (a QLoRA bundle's base is quantized
    again, as in training). Over a quantized base the adapter stays unmerged (merging would round it
    into 4/8-bit weights): ``merge`` then returns the base model with the adapter layers in place,
    and ``dtype`` applies to the layers that are not quantized."""
    import torch

    from patentclf.model.base import (
        NO_QUANTIZE,
        QUANTIZE_KINDS,
        bitsandbytes_hidden,
        load_classification_model,
        pick_device,
        quiet_transformers,
    )
    from patentclf.model.heads import HeadLayout

    bundle_dir = Path(bundle_dir)
    info = read_info(bundle_dir)
    kind = info.quantization if quantize is None else quantize
    if kind not in (*QUANTIZE_KINDS, NO_QUANTIZE, None):
        raise ModelError(f"unknown quantization {kind!r}: use 4bit, 8bit or none")
    kind = None if kind == NO_QUANTIZE else kind
    target = torch.device(device) if device is not None else (pick_device() if kind else None)
    tokenizer = load_bundle_tokenizer(bundle_dir, info)
    with quiet_transformers():
        base = load_classification_model(
            info.base_model,
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


def load_bundle_tokenizer(bundle_dir: str | Path, info: BundleInfo):
    """The bundle's tokenizer: its own copy, or an embedded base model's (see write_bundle)."""
    from transformers import AutoTokenizer

    from patentclf.model.base import load_tokenizer

    if (Path(bundle_dir) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(bundle_dir)
    return load_tokenizer(info.base_model)
