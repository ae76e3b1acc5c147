"""The settings of a training run, declared once (pydantic): ``TrainConfig``.

``patentclf train`` builds one flag per field from these declarations, as ``serve`` does from
``ServiceConfig``; a config file (YAML or JSON, keys = field names) is read through them; the run's
fingerprint and the bundle's model card record every field. Light on purpose (no torch): the CLI
imports it to build its flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_BASE_MODEL = "meta-llama/Llama-3.2-1B"

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LossWeights:
    """How much each extra head's loss counts beside the main section's (weight 1), as
    ``heads.head_loss`` reads them. ``TrainConfig``'s fields (``sections_loss_weight`` ...) take
    their defaults from here."""

    sections: float = 1.0
    classes: float = 0.5
    subclasses: float = 0.5
    label_smoothing: float = 0.0


class TrainConfig(BaseModel):
    """Every setting of a training run, declared once: ``patentclf train`` builds one flag per field
    from these declarations (type, bounds, choices and help), a config file (YAML/JSON, keys = field
    names) is read through them, and the model card records them all (the run's fingerprint, those that
    change the checkpoints)."""

    # Unknown keys are refused; an assignment (e.g. resuming sets base_model) is validated too.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # `patentclf train --help` lists the settings in panels: each from the field named here to the next one's.
    panels: ClassVar[dict[str, str]] = {
        "data": "Data",
        "base_model": "Model and output",
        "epochs": "Optimisation",
        "lora_r": "LoRA",
        "precision": "Hardware and speed",
        "eval_steps": "Evaluation and calibration",
        "heads": "Heads and their losses",
    }

    data: str = Field("bundled", min_length=1, description="bundled | FILE | FOLDER | hub dataset name")
    data_config: str = Field("abstract", min_length=1, description="hub dataset config: patent | abstract")
    extra_data: list[str] = Field([], description="more labelled rows (e.g. exported feedback); repeatable")
    text_fields: list[str] | None = Field(
        None, description="text column(s), joined; repeatable (default: text, or title + abstract)"
    )
    train_limit: int | None = Field(None, gt=0, description="seeded, stratified subset of the training rows")
    eval_limit: int | None = Field(None, gt=0, description="seeded, stratified subset of the evaluation rows")
    normalize: bool = Field(True, description="feed text in BIGPATENT form (lowercase, spaced punctuation)")
    base_model: str = Field(
        DEFAULT_BASE_MODEL,
        min_length=1,
        description="hub id, local folder, or an embedded model: gemma3-270m, smollm2-135m",
    )
    output_dir: str = Field("final_model", min_length=1, description="bundle folder")
    checkpoint_dir: str | None = Field(None, description="checkpoints (default OUTPUT_DIR-checkpoints); a rerun resumes")
    resume_from: str | None = Field(None, description="an existing bundle whose adapter training continues")
    max_length: int = Field(256, gt=0, description="tokens read per text")
    epochs: float = Field(1.0, gt=0, description="passes over the training rows (a fraction is allowed)")
    batch_size: int = Field(8, gt=0, description="training rows per step and device")
    eval_batch_size: int = Field(32, gt=0, description="evaluation rows per model call")
    gradient_accumulation: int = Field(1, gt=0, description="steps whose gradients are summed before an update")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (linear warmup and decay)")
    head_learning_rate: float | None = Field(None, gt=0, description="the score layer's own rate (default: learning_rate)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps spent warming the rate up")
    seed: int = Field(42, ge=0, description="seed of the subsets, the hold-out, initialisation and shuffling")
    lora_r: int = Field(8, gt=0, description="LoRA rank")
    lora_alpha: int = Field(16, gt=0, description="LoRA scale numerator (the update is scaled by alpha / r)")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] = Field(list(ALL_PROJECTIONS), min_length=1, description="modules LoRA adapts; repeatable")
    lora_layers: int | None = Field(None, gt=0, description="adapt only the top N layers (a shorter backward pass)")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the hardware has it, else fp32"
    )
    quantize: Literal["4bit", "8bit"] | None = Field(None, description="QLoRA: a 4bit or 8bit base (bitsandbytes: CUDA or CPU)")
    group_by_length: bool = Field(True, description="batch rows of similar length (less padding)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less memory)")
    torch_compile: bool = Field(False, description="torch.compile the model")
    eval_steps: int | None = Field(None, gt=0, description="evaluate and checkpoint every N steps (default: each epoch)")
    evaluate_test: bool = Field(True, description="measure the finished bundle on the test split too")
    # After training, a TF-IDF + logistic regression partner fitted on the training rows is blended
    # with the model (weights and temperatures fitted on validation; see tuning.py).
    tfidf_ensemble: bool = Field(True, description="fit the TF-IDF partner of the blend after training")
    # "auto" trains the hierarchy heads (all sections, main class, main subclass) beside the
    # main-section head when the training rows carry codes (an `ipc` column).
    heads: Literal["auto", "section"] = Field(
        "auto",
        description="auto: hierarchy heads too when the data has ipc codes | section: the main section only",
    )
    sections_loss_weight: float = Field(
        LossWeights.sections, ge=0, description="weight of the every-section (multi-label) head's loss"
    )
    class_loss_weight: float = Field(LossWeights.classes, ge=0, description="weight of the main-class head's loss")
    subclass_loss_weight: float = Field(LossWeights.subclasses, ge=0, description="weight of the main-subclass head's loss")
    label_smoothing: float = Field(
        LossWeights.label_smoothing, ge=0, lt=1, description="label smoothing of the single-label heads"
    )
    # A causal model's state at a short prefix is what it would see of a short text, so training
    # there too costs no extra forward pass.
    prefix_loss_weight: float = Field(
        0.0, ge=0, description="also train each row read at a random short prefix, with this weight"
    )
    prefix_tokens: tuple[int, int] = Field((16, 64), description="LOW HIGH: the prefix length range, in tokens")
    command: str | None = Field(None, description="the command line that produced this config, for the model card")

    @field_validator("prefix_tokens")
    @classmethod
    def _prefix_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high:
            raise ValueError("must be LOW HIGH with 1 <= LOW <= HIGH")
        return value

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        """A YAML or JSON file of settings (keys: the field names); ``overrides`` win."""
        import yaml

        text = Path(path).read_text()
        values = json.loads(text) if str(path).lower().endswith(".json") else yaml.safe_load(text)
        if not isinstance(values, dict | None):
            raise ValueError(f"{path}: expected a mapping of setting names to values")
        return cls.model_validate({**(values or {}), **overrides})

    @classmethod
    def load(cls, config_file: str | Path | None = None, **flags) -> "TrainConfig":
        """The defaults < ``config_file`` < ``flags`` (``None`` counts as not given); a bad value
        raises a ValueError of one line that names the setting."""
        given = {k: v for k, v in flags.items() if v is not None}
        if config_file is not None and not Path(config_file).is_file():
            raise FileNotFoundError(f"config file {config_file} not found")
        try:
            return cls.from_file(config_file, **given) if config_file else cls(**given)
        except ValidationError as exc:
            where = f"{config_file}: " if config_file else ""
            raise ValueError(where + "; ".join(_error_line(e) for e in exc.errors())) from None

    def loss_weights(self) -> LossWeights:
        return LossWeights(
            sections=self.sections_loss_weight,
            classes=self.class_loss_weight,
            subclasses=self.subclass_loss_weight,
            label_smoothing=self.label_smoothing,
        )

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _error_line(error: dict) -> str:
    """One pydantic error as ``name: message (given value)``."""
    name = ".".join(str(part) for part in error["loc"])
    given = f" (given {error['input']!r})" if error["type"] != "extra_forbidden" else ""
    message = error["msg"].removeprefix("Value error, ")  # a validator's own message
    return f"{name}: {message}{given}"
