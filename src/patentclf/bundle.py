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
            info["base_model"],
            pad_token_id=tokenizer.pad_token_id,
            dtype=torch.float32,
            num_labels=HeadLayout.from_info(info).size,
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


def metrics_rows(metrics: dict, baselines: dict | None = None) -> str:
    """Markdown rows ``| split | n | accuracy | macro-F1 | ECE | TF-IDF accuracy | TF-IDF macro-F1 |``."""
    baselines = baselines or {}
    rows = []
    for name, m in metrics.items():
        if not m:
            rows.append(f"| {name} | - | - | - | - | - | - |")
            continue
        base = baselines.get(name, {})
        cells = [
            name,
            str(m["n"]),
            f"{m['accuracy']:.3f}",
            f"{m['macro_f1']:.3f}",
            f"{m['ece']:.3f}" if "ece" in m else "-",
            f"{base['accuracy']:.3f}" if base else "-",
            f"{base['macro_f1']:.3f}" if base else "-",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) or "| (not evaluated) | | | | | | |"


HIERARCHY_FIGURES = (
    ("top_section_in_sections", "top section is one of the patent's sections"),
    ("sections_micro_f1", "micro-F1 of the predicted section set"),
    ("class_top1", "main class top-1"),
    ("class_top5", "main class in the top 5"),
    ("subclass_top1", "main subclass top-1"),
    ("subclass_top5", "main subclass in the top 5"),
    ("subclass_any_top5", "any of the patent's subclasses in the top 5"),
)


def hierarchy_rows(metrics: dict, baselines: dict | None = None) -> str:
    """Markdown rows of the hierarchy figures on the test split, beside the TF-IDF baseline."""
    test, base = metrics.get("test") or {}, (baselines or {}).get("test") or {}
    rows = []
    for key, label in HIERARCHY_FIGURES:
        if key in test:
            theirs = f"{base[key]:.3f}" if key in base else "-"
            rows.append(f"| {label} | {test[key]:.3f} | {theirs} |")
    return "\n".join(rows)


def labels_line() -> str:
    """The label table in one line, for model cards."""
    return ", ".join(f"{s.id} {s.code} {s.name}" for s in SECTIONS)


def write_model_card(bundle_dir: str | Path, info: dict) -> None:
    from .calibration import ORDER_MIX  # numpy: not needed to read a bundle's info

    rows = metrics_rows(info.get("metrics", {}), info.get("baselines"))
    hierarchy = hierarchy_rows(info.get("metrics", {}), info.get("baselines"))
    # The training log stays in patentclf.json; the card lists the settings that reproduce the run.
    training = info.get("training", {})
    hyper = {k: v for k, v in training.items() if k not in ("log_history", "resumed_from")}
    commands = [info.get("command", "(unknown)")]
    previous = training.get("resumed_from")
    while previous:  # a continued run: its earlier runs' commands come first
        commands.insert(0, f"{previous.get('command')}   # then continued by:")
        previous = previous.get("training", {}).get("resumed_from")
    heads = info.get("heads")
    heads_text = (
        f"Besides the main section it answers every section the patent belongs to (multi-label), and the top 5 main CPC "
        f"classes ({len(heads['classes'])} known) and subclasses ({len(heads['subclasses'])} known)."
        if heads
        else "It answers the main section only."
    )
    calibration = info.get("calibration", {})
    section = calibration.get("section", {})
    pooled = section.get("weights")
    calibration_text = (
        "Section probabilities pool, log-linearly, the LLM's section head, a TF-IDF + logistic regression model "
        "trained on the same rows, and the LLM's class and subclass heads summed up to sections, with weights "
        + ", ".join(f"{name} {weight:.2f}" for name, weight in pooled.items())
        + f"; the predicted section's probability is then read through a confidence map "
        f"({len(section.get('confidence_map', {}).get('confidence', []))} equal-count bins, isotonic, "
        f"with {ORDER_MIX:.0%} of the raw value mixed in so that confidences keep their order), so it matches "
        "how often such answers are right. The sections come from a logistic regression "
        "over every head's view of each section (threshold "
        f"{calibration.get('sections_stack', {}).get('threshold', calibration.get('sections_threshold', '-'))}); "
        "class and subclass probabilities blend the LLM with TF-IDF and a temperature. All of these were fitted on "
        "the validation split."
        if pooled
        else f"Section probabilities are a log-linear blend of the LLM ({section.get('llm_weight', 1.0):.2f}) and a TF-IDF + "
        f"logistic regression model trained on the same rows ({1 - section.get('llm_weight', 1.0):.2f}), divided by a "
        f"temperature of {section.get('temperature', 1.0):.2f}; weights, temperatures and the sections threshold "
        f"({calibration.get('sections_threshold', '-')}) were fitted on the validation split."
        if section
        else "Probabilities are the model's own softmax (not calibrated)."
    )
    card = f"""---
library_name: peft
base_model: {info.get("base_model")}
pipeline_tag: text-classification
tags: [patentclf, lora, patents, cpc]
---

# patentclf model: CPC classifier

LoRA adapter (with its trained `score` head) over `{info.get("base_model")}` that puts a patent's text
into one of the nine CPC sections A-H, Y. {heads_text} Load it with `patentclf predict --model <this
folder>` or `patentclf.Classifier.load("<this folder>")`.

Base weights: {info.get("base_model_weights", info.get("base_model"))}.

Inputs are normalised before tokenizing (lowercased, punctuation spaced out: BIGPATENT's form), so
mixed-case abstracts and BIGPATENT's lowercased text are classified alike. At most
{info.get("max_length")} tokens are read; longer text is truncated unless `--long-text chunk` is used.
{calibration_text}

## Results

Measured on data the model did not train on (`n` rows each; ECE: expected calibration error of the
predicted section, 15 bins). TF-IDF: 1-2 grams + logistic regression trained on the same rows.

| split | n | accuracy | macro-F1 | ECE | TF-IDF accuracy | TF-IDF macro-F1 |
|---|---|---|---|---|---|---|
{rows}

{"Hierarchy, test split (against each patent's own IPC codes):" if hierarchy else ""}

{"| figure | model | TF-IDF |" if hierarchy else ""}
{"|---|---|---|" if hierarchy else ""}
{hierarchy}

## Training

- data: `{json.dumps(info.get("data", {}))}`
- hyperparameters: `{json.dumps(hyper)}`
- library versions: `{json.dumps(info.get("versions", {}))}`

Reproduce:

```
{chr(10).join(commands)}
```
"""
    (Path(bundle_dir) / "README.md").write_text(card)
