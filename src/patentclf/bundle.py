"""A model bundle on disk: LoRA adapter with its head, tokenizer, ``patentclf.json`` and a model card.

The bundle names its base model (``smollm2-135m``, a hub id or a folder), so it stays a few MB.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path

from .labels import SECTIONS
from .models import EMBEDDED_MODELS, ModelError

INFO_FILE = "patentclf.json"
ADAPTER_FILE = "adapter_model.safetensors"
FORMAT_VERSION = 1


def default_model_dir() -> Path:
    """The bundle shipped inside the package: the model used when none is named."""
    return Path(str(resources.files("patentclf") / "resources" / "default-model"))


def label_table() -> list[dict]:
    return [{"id": s.id, "code": s.code, "name": s.name} for s in SECTIONS]


def read_info(bundle_dir: str | Path) -> dict:
    path = Path(bundle_dir) / INFO_FILE
    if not path.is_file():
        raise ModelError(f"{bundle_dir}: not a patentclf model bundle (no {INFO_FILE})")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc
    if [s["code"] for s in info.get("labels", [])] != [s.code for s in SECTIONS]:
        raise ModelError(f"{path}: its label table differs from the nine CPC sections A..H, Y")
    return info


def write_info(bundle_dir: str | Path, info: dict) -> None:
    path = Path(bundle_dir) / INFO_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def model_version(bundle_dir: str | Path) -> str:
    """``<folder name>@<first 12 hex digits of the adapter's sha256>``: changes whenever the weights do."""
    bundle_dir = Path(bundle_dir)
    adapter = bundle_dir / ADAPTER_FILE
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()[:12] if adapter.is_file() else "unknown"
    return f"{bundle_dir.resolve().name}@{digest}"


def save_bundle(peft_model, tokenizer, info: dict, out_dir: str | Path) -> Path:
    """Write adapter + head, tokenizer, info and card; replaces ``out_dir`` only once all is written."""
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
    write_model_card(staging, info)
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


def load_bundle(bundle_dir: str | Path, *, dtype=None, device=None, merge: bool = True):
    """Load (model, tokenizer, info); the LoRA weights are merged into the base for fast inference."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from .heads import HeadLayout
    from .models import load_classification_model, load_tokenizer, quiet_transformers

    bundle_dir = Path(bundle_dir)
    info = read_info(bundle_dir)
    if (bundle_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(bundle_dir)
    else:  # an embedded base model's own tokenizer (see save_bundle)
        tokenizer = load_tokenizer(info["base_model"])
    with quiet_transformers():
        base = load_classification_model(
            info["base_model"], pad_token_id=tokenizer.pad_token_id, dtype=torch.float32, num_labels=HeadLayout.from_info(info).size
        )
    model = PeftModel.from_pretrained(base, bundle_dir)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model, tokenizer, info


def metrics_rows(metrics: dict) -> str:
    """Markdown rows ``| split | n | accuracy | macro-F1 |`` for a model card."""
    rows = [
        f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" if m else f"| {name} | - | - | - |"
        for name, m in metrics.items()
    ]
    return "\n".join(rows) or "| (not evaluated) | | | |"


def labels_line() -> str:
    """The label table in one line, for model cards."""
    return ", ".join(f"{s.id} {s.code} {s.name}" for s in SECTIONS)


def write_model_card(bundle_dir: str | Path, info: dict) -> None:
    rows = metrics_rows(info.get("metrics", {}))
    # The training log stays in patentclf.json; the card lists the settings that reproduce the run.
    hyper = {k: v for k, v in info.get("training", {}).items() if k != "log_history"}
    card = f"""---
library_name: peft
base_model: {info.get("base_model")}
pipeline_tag: text-classification
tags: [patentclf, lora, patents, cpc]
---

# patentclf model: CPC section classifier

LoRA adapter (with its trained `score` head) over `{info.get("base_model")}` that puts a patent's text
into one of the nine CPC sections A-H, Y. Load it with `patentclf predict --model <this folder>` or
`patentclf.Classifier.load("<this folder>")`.

Inputs are normalised before tokenizing (lowercased, punctuation spaced out: BIGPATENT's form), so
mixed-case abstracts and BIGPATENT's lowercased text are classified alike. At most
{info.get("max_length")} tokens are read; longer text is truncated unless `--long-text chunk` is used.

## Results

Measured on data the model did not train on (`n` rows each):

| split | n | accuracy | macro-F1 |
|---|---|---|---|
{rows}

## Training

- data: `{json.dumps(info.get("data", {}))}`
- hyperparameters: `{json.dumps(hyper)}`
- library versions: `{json.dumps(info.get("versions", {}))}`

Reproduce:

```
{info.get("command", "(unknown)")}
```
"""
    (Path(bundle_dir) / "README.md").write_text(card)
