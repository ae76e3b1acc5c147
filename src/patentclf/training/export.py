"""Export a bundle as a plain transformers checkpoint: LoRA merged into the base, no peft needed.

The result loads with ``AutoModelForSequenceClassification.from_pretrained(folder)`` and, as it is,
with ``vllm serve FOLDER --runner pooling`` (vLLM's classification runner; see ``VLLM_ARCHITECTURES``).
``patentclf.json`` is kept beside it, so the folder still says what it is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from patentclf.model.bundle import load_bundle, model_version, read_info, write_info
from patentclf.model.heads import HeadLayout
from patentclf.training.cards import export_card

# transformers' class names that vLLM maps to another model: vLLM serves ``XForSequenceClassification``
# by converting its own ``XForCausalLM``, and resolves Gemma3TextForSequenceClassification to a
# headless Gemma3TextModel whose weight names lack the ``model.`` prefix, so it refuses the checkpoint.
# transformers itself picks the class from ``model_type``, not from ``architectures``, so the renamed
# checkpoint still loads there as before.
VLLM_ARCHITECTURES = {"Gemma3TextForSequenceClassification": "Gemma3ForSequenceClassification"}

EXPORT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def export_merged(bundle_dir: str | Path, out_dir: str | Path, *, dtype: str = "float32") -> Path:
    """Write ``out_dir``: merged weights, config (id2label/label2id, pad token), tokenizer, card.

    ``dtype`` float32 keeps the bundle's predictions exactly; bfloat16 halves the size (the usual
    choice for GPU serving; logits move by ~0.02).
    """
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(EXPORT_DTYPES)}, not {dtype!r}")
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    info = read_info(bundle_dir)
    # A QLoRA bundle's adapter is merged into the full-precision base: an export has no bitsandbytes.
    model, tokenizer, _ = load_bundle(bundle_dir, dtype=EXPORT_DTYPES[dtype], merge=True, quantize="none")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    config = model.config
    # Every output named; for a hierarchy model the first nine are the main section (see heads.py).
    names = HeadLayout.from_info(info).output_names()
    config.id2label = {i: name for i, name in enumerate(names)}
    config.label2id = {name: i for i, name in enumerate(names)}
    config.pad_token_id = tokenizer.pad_token_id
    config.problem_type = "single_label_classification"
    # What a server must do to the text before tokenizing (also in README.md and patentclf.json).
    config.patentclf_text_normalization = TEXT_NORMALIZATION if info.normalized else "none"
    config.patentclf_max_length = info.max_length

    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    # save_pretrained writes the model's own class name: rename it afterwards where vLLM needs another.
    saved = json.loads((staging / "config.json").read_text())
    saved["architectures"] = [VLLM_ARCHITECTURES.get(name, name) for name in saved.get("architectures") or []]
    (staging / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(staging)
    exported_from = {"bundle": str(bundle_dir.resolve()), "version": model_version(bundle_dir), "dtype": dtype}
    write_info(staging, info.model_copy(update={"exported_from": exported_from}))
    (staging / "README.md").write_text(export_card(info, dtype))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


TEXT_NORMALIZATION = (
    "bigpatent: lowercase the text and put spaces around punctuation before tokenizing "
    "(patentclf.corpus.data.to_bigpatent_form); the tokenizer adds the BOS token"
)
