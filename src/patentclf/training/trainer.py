"""Training: a config (flags or a YAML/JSON file) -> LoRA fine-tuning with transformers' Trainer -> a bundle."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer

from patentclf.corpus import data as data_mod
from patentclf.corpus.labels import NUM_LABELS
from patentclf.inference.classifier import Classifier
from patentclf.model.base import (
    LoraSettings,
    add_lora,
    attention_implementation,
    base_model_weights,
    load_classification_model,
    load_tokenizer,
    pick_device,
    supports_bf16,
    upcast_trainable,
)
from patentclf.model.bundle import (
    BundleInfo,
    PreviousRun,
    SplitInfo,
    TrainingInfo,
    publish,
    read_info,
    staging_dir,
    write_bundle,
    write_info,
)
from patentclf.model.heads import TARGET_KEYS, HeadLayout, encode_targets, head_loss, last_token_positions
from patentclf.model.train_config import ALL_PROJECTIONS, TrainConfig  # noqa: F401 (benches import ALL_PROJECTIONS from here)
from patentclf.training.cards import write_model_card
from patentclf.training.evaluation import baseline_metrics, compute_metrics, evaluate_predictions, short_text_form, summary
from patentclf.training.tuning import calibrate_classifier

# --- data --------------------------------------------------------------------------------------


def load_training_data(config: TrainConfig) -> dict[str, data_mod.Split]:
    """train / validation (/ test) splits; a spec without validation gets a stratified 10% hold-out."""
    options = dict(data_config=config.data_config, text_fields=tuple(config.text_fields) if config.text_fields else None)
    train = data_mod.load_split(config.data, "train", **options)
    if data_mod.has_split(config.data, "validation"):
        validation = data_mod.load_split(config.data, "validation", **options)
    else:
        train, validation = data_mod.stratified_holdout(train, 0.1, config.seed)
    train = data_mod.stratified_subset(train, config.train_limit, config.seed)
    splits = {"train": train, "validation": data_mod.stratified_subset(validation, config.eval_limit, config.seed)}
    if config.evaluate_test and data_mod.has_split(config.data, "test"):
        splits["test"] = data_mod.stratified_subset(
            data_mod.load_split(config.data, "test", **options), config.eval_limit, config.seed
        )
    if config.extra_data:
        evaluation = [validation] + (
            [data_mod.load_split(config.data, "test", **options)] if data_mod.has_split(config.data, "test") else []
        )
        extra = [without_evaluation_rows(data_mod.load_split(p, "train"), evaluation) for p in config.extra_data]
        splits["train"] = data_mod.concat([train] + extra)
    return splits


def without_evaluation_rows(extra: data_mod.Split, evaluation: list[data_mod.Split]) -> data_mod.Split:
    """``extra`` less the rows that are also evaluation rows (same id, or the same text once
    normalised), with a warning: exported feedback on a test patent must not leak into training."""
    import warnings

    texts = {data_mod.to_bigpatent_form(t) for split in evaluation for t in split.texts}
    ids = {i for split in evaluation for i in split.ids if i}
    keep = [
        i
        for i, (text, row_id) in enumerate(zip(extra.texts, extra.ids))
        if row_id not in ids and data_mod.to_bigpatent_form(text) not in texts
    ]
    dropped = len(extra) - len(keep)
    if dropped:
        warnings.warn(f"{extra.source}: dropped {dropped} of {len(extra)} rows that are also validation/test rows", stacklevel=2)
    return extra.subset(keep)


def _tokenized(
    split: data_mod.Split, tokenizer, config: TrainConfig, layout: HeadLayout | None = None, sort_by_length: bool = False
):
    """Token ids, the main-section label and (for a hierarchy ``layout``) the extra heads' targets."""
    from datasets import Dataset

    layout = layout or HeadLayout()

    texts = [data_mod.to_bigpatent_form(t) for t in split.texts] if config.normalize else split.texts
    encoded = tokenizer(texts, truncation=True, max_length=config.max_length)
    extra = encode_targets(layout, split.codes) if layout.hierarchical else {}
    dataset = Dataset.from_dict({**encoded, "labels": split.labels, **extra})
    if sort_by_length:  # evaluation order does not matter; similar lengths waste less padding
        dataset = dataset.add_column("length", [len(ids) for ids in encoded["input_ids"]])
        dataset = dataset.sort("length").remove_columns("length")
    return dataset


# --- the model ---------------------------------------------------------------------------------


def _precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16" if supports_bf16(device) else "fp32"


def build_model(
    config: TrainConfig, tokenizer, precision: str, device: torch.device | None = None, layout: HeadLayout | None = None
):
    """Base model + LoRA; with ``resume_from``, the existing adapter continues training. ``device``
    picks the attention kernel (see ``models.attention_implementation``)."""
    # With bf16, the frozen base weights are stored in bf16 (half the memory traffic); trainable
    # LoRA and head weights stay fp32 and autocast does the matmuls in bf16.
    dtype = torch.bfloat16 if precision == "bf16" and not config.quantize else torch.float32
    model = load_classification_model(
        config.base_model,
        pad_token_id=tokenizer.pad_token_id,
        dtype=dtype,
        quantize=config.quantize,
        attn_implementation=attention_implementation(device),
        num_labels=(layout or HeadLayout()).size,
        device=device,
    )
    if config.quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if config.resume_from:
        from peft import PeftModel

        return upcast_trainable(PeftModel.from_pretrained(model, config.resume_from, is_trainable=True))
    settings = LoraSettings(
        r=config.lora_r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        target_modules=config.target_modules,
        layers=config.lora_layers,
    )
    return add_lora(model, settings)


def _metrics_for_trainer(eval_pred) -> dict:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    # The main-section head picks checkpoints; it is the first nine outputs of every layout.
    return summary(compute_metrics(labels, np.asarray(logits)[:, :NUM_LABELS].argmax(-1)))


def library_versions() -> dict:
    import peft
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def data_collator(tokenizer):
    """Dynamic padding: each batch is padded to its own longest row (rounded up to a multiple of 8)."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)


def training_arguments(
    config: TrainConfig, precision: str, device: torch.device, checkpoint_dir: str | Path, *, progress: bool = True, **overrides
):
    """The ``TrainingArguments`` that ``patentclf train`` uses (benchmarks reuse them; ``overrides`` win)."""
    from transformers import TrainingArguments

    strategy = "steps" if config.eval_steps else "epoch"
    options = dict(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        label_names=["labels"],  # PEFT wrappers hide `labels`; without this compute_metrics never runs
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.type == "cpu",
        optim="adamw_torch_fused" if device.type in ("cuda", "cpu") else "adamw_torch",
        gradient_checkpointing=config.gradient_checkpointing,
        torch_compile=config.torch_compile,
        seed=config.seed,
        logging_steps=10,
        report_to="none",
        disable_tqdm=not progress,
        save_only_model=False,
        # Under DDP, transformers multiplies the loss by the number of processes when the model takes
        # loss kwargs, expecting a loss summed over tokens; a classifier's loss is a per-rank mean, so
        # gradients came out world_size times too large (and the logged loss doubled with 2 ranks).
        average_tokens_across_devices=False,
    )
    options.update(overrides)
    return TrainingArguments(**options)


def head_layout(config: TrainConfig, train_split: data_mod.Split) -> HeadLayout:
    """The heads to train: a resumed bundle keeps its own; otherwise hierarchy heads when the
    training rows carry codes and ``config.heads`` is auto."""
    if config.resume_from:
        return HeadLayout.from_info(read_info(config.resume_from))
    if config.heads == "auto" and train_split.has_codes:
        return HeadLayout.from_codes(train_split.codes)
    return HeadLayout()


def train(config: TrainConfig, progress: bool = True, restart: bool = False) -> Path:
    """Fine-tune, keep the best evaluation, then build the bundle beside ``output_dir`` (weights,
    calibration on validation, figures on validation and test, card) and put it in place.

    Checkpoints of an interrupted run are resumed when the run's settings and data are the same;
    a different run in the same checkpoint folder is refused unless ``restart`` clears it. The
    caller's ``config`` is left as it was."""
    from transformers import set_seed

    if config.resume_from:  # a continued bundle keeps its base model and window
        previous = read_info(config.resume_from)
        config = config.model_copy(update={"base_model": previous.base_model, "max_length": previous.max_length})
    set_seed(config.seed)
    splits = load_training_data(config)
    checkpoint_dir = Path(config.checkpoint_dir or f"{config.output_dir}-checkpoints")
    resume = claim_checkpoints(checkpoint_dir, run_fingerprint(config, splits), restart=restart)
    layout = head_layout(config, splits["train"])
    tokenizer = load_tokenizer(config.base_model)
    device = pick_device()
    precision = _precision(config, device)
    model = build_model(config, tokenizer, precision, device, layout)

    train_set = _tokenized(splits["train"], tokenizer, config, layout)
    eval_set = _tokenized(splits["validation"], tokenizer, config, layout, sort_by_length=True)
    # Target columns are not arguments of the model's forward: keep them for HeadTrainer.compute_loss.
    args = training_arguments(config, precision, device, checkpoint_dir, progress=progress, remove_unused_columns=False)
    trainer = HeadTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=data_collator(tokenizer),
        compute_metrics=_metrics_for_trainer,
        layout=layout,
        config=config,
    )
    trainer.train(resume_from_checkpoint=True if resume else None)
    if not trainer.is_world_process_zero():
        # Under DDP (accelerate launch / torchrun) only rank 0 writes and evaluates the bundle; the
        # others wait until it is written, so a caller that reads it on any rank finds it complete.
        trainer.accelerator.wait_for_everyone()
        return Path(config.output_dir)

    try:
        # Built in <output_dir>.partial: output_dir is replaced only once everything is written.
        staging = staging_dir(config.output_dir)
        info = bundle_info(config, layout, splits, trainer, precision, device)
        write_bundle(trainer.model, tokenizer, info, staging)
        classifier = Classifier.load(staging)  # loaded once: calibrated, then measured
        info.calibration = calibrate_classifier(classifier, splits["train"], splits["validation"], tfidf=config.tfidf_ensemble)
        info = measure_into_info(classifier, splits, info)
        write_info(staging, info)
        write_model_card(staging, info)
        return publish(staging, config.output_dir)
    finally:
        trainer.accelerator.wait_for_everyone()


def bundle_info(
    config: TrainConfig, layout: HeadLayout, splits: dict[str, data_mod.Split], trainer: Trainer, precision: str, device
) -> BundleInfo:
    """What the new bundle's ``patentclf.json`` says before calibration and figures: the base model,
    how text is read, the heads, the run (settings and facts), its data and the library versions."""
    training = TrainingInfo.model_validate(
        {
            **config.model_dump(exclude={"command"}),  # the command is the bundle's own
            "precision": precision,
            "device": device.type,
            "world_size": trainer.args.world_size,
            "train_rows": len(splits["train"]),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "peak_memory_mb": peak_memory_mb(device),
            "log_history": trainer.state.log_history[-20:],
            **({"resumed_from": previous_run(config.resume_from)} if config.resume_from else {}),
        }
    )
    return BundleInfo.new(
        base_model=config.base_model,
        base_model_weights=base_model_weights(config.base_model),
        max_length=config.max_length,
        **({"heads": layout.to_dict()} if layout.hierarchical else {}),
        normalize="bigpatent" if config.normalize else "none",
        training=training,
        data={
            name: SplitInfo(source=split.source, rows=len(split), labels=split.label_counts()) for name, split in splits.items()
        },
        metrics={},
        versions=library_versions(),
        command=config.command or " ".join(sys.argv),
    )


# --- the loss over every head ------------------------------------------------------------------


class HeadTrainer(Trainer):
    """transformers' Trainer with the loss of every head in a :class:`HeadLayout`, each read at the
    row's last token by the same rule as prediction (``heads.last_token_positions``), and optionally
    also at a random short prefix (``prefix_loss_weight``), so short inputs are trained too."""

    def __init__(self, *args, layout: HeadLayout, config: TrainConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.layout = layout
        self.config = config
        self.weights = config.loss_weights()
        self.prefix_generator = torch.Generator().manual_seed(config.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        labels = inputs.pop("labels")
        extra = {key: inputs.pop(key) for key in TARGET_KEYS if key in inputs}
        # Through the (possibly DDP-wrapped) model, so gradient sync works; its hidden_states[-1] is
        # the final normed state that the score head reads.
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True)
        hidden = outputs.hidden_states[-1]
        lengths = inputs["attention_mask"].sum(dim=1)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        unwrapped = self.accelerator.unwrap_model(model)
        score = (unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped).score
        logits = score(hidden[rows, last_token_positions(lengths)])
        loss = head_loss(logits, labels, extra, self.layout, self.weights)
        if model.training and self.config.prefix_loss_weight > 0:
            low, high = self.config.prefix_tokens
            cut = torch.randint(low, high + 1, (hidden.shape[0],), generator=self.prefix_generator).to(lengths.device)
            prefix_logits = score(hidden[rows, last_token_positions(torch.minimum(cut, lengths))])
            loss = loss + self.config.prefix_loss_weight * head_loss(prefix_logits, labels, extra, self.layout, self.weights)
        return (loss, SequenceClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    def create_optimizer(self, model=None):
        """With ``head_learning_rate``, the score layer gets its own rate (a new, randomly initialised
        layer often wants a larger one than the adapters)."""
        if self.config.head_learning_rate is None or self.optimizer is not None:
            return super().create_optimizer()
        named = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        head = [p for name, p in named if ".score." in name or name.startswith("score.")]
        rest = [p for name, p in named if not (".score." in name or name.startswith("score."))]
        optimizer_cls, options = self.get_optimizer_cls_and_kwargs(self.args, self.model)
        groups = [{"params": rest}, {"params": head, "lr": self.config.head_learning_rate}]
        self.optimizer = optimizer_cls([g for g in groups if g["params"]], **options)
        return self.optimizer


# --- resuming only the same run ----------------------------------------------------------------

FINGERPRINT_FILE = "run-fingerprint.json"
# Settings that do not change the checkpoints (where they go, how they are described, evaluated or
# calibrated after training).
_NOT_FINGERPRINTED = {"output_dir", "checkpoint_dir", "command", "eval_batch_size", "evaluate_test", "tfidf_ensemble"}


class TrainingError(RuntimeError):
    """A training run cannot start as asked; the message says why and what to do."""


def run_fingerprint(config: TrainConfig, splits: dict[str, data_mod.Split]) -> dict:
    """What makes a run this run: its settings and a digest of its training and validation rows."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("train", "validation"):
        split = splits[name]
        for text, label, codes in zip(split.texts, split.labels or [], split.codes):
            digest.update(json.dumps([name, text, label, codes]).encode())
    settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_FINGERPRINTED}
    return {"settings": settings, "data": digest.hexdigest()}


def claim_checkpoints(checkpoint_dir: Path, fingerprint: dict, restart: bool = False) -> bool:
    """Whether to resume from ``checkpoint_dir``: yes when its checkpoints come from the same run,
    no when it has none. A different (or unrecorded) run there is refused unless ``restart``, which
    deletes its checkpoints. The folder then records this run's fingerprint."""
    import shutil

    record = checkpoint_dir / FINGERPRINT_FILE
    has_checkpoints = any(checkpoint_dir.glob("checkpoint-*"))
    if has_checkpoints and not restart:
        if not record.is_file():
            raise TrainingError(
                f"{checkpoint_dir} holds checkpoints of an unrecorded run; pass --restart to delete them and start over, "
                "or name another --checkpoint-dir"
            )
        previous = json.loads(record.read_text())
        # A record written before a setting existed: that run had the setting's default.
        defaults = {k: v for k, v in TrainConfig().to_dict().items() if k in fingerprint["settings"]}
        previous["settings"] = {**defaults, **previous.get("settings", {})}
        if previous != fingerprint:
            changed = sorted(
                k for k in fingerprint["settings"] if previous.get("settings", {}).get(k) != fingerprint["settings"][k]
            )
            if previous.get("data") != fingerprint["data"]:
                changed.append("the training/validation data")
            raise TrainingError(
                f"{checkpoint_dir} holds checkpoints of a different run (changed: {', '.join(changed)}); "
                "pass --restart to delete them and start over, or name another --checkpoint-dir"
            )
        return True
    if restart and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(fingerprint, indent=1))
    tmp.replace(record)
    return False


def previous_run(bundle_dir: str | Path) -> PreviousRun:
    """What a continued bundle was trained with (its adapter's settings, such as LoRA rank and
    layers, come from there, not from this run's config), for the model card."""
    previous = read_info(bundle_dir)
    # The training log stays in the earlier bundle.
    training = TrainingInfo.model_validate(previous.training.model_dump(exclude={"log_history"})) if previous.training else None
    return PreviousRun(bundle=str(bundle_dir), training=training, metrics=previous.metrics, command=previous.command)


def peak_memory_mb(device: torch.device) -> dict:
    """This process's peak memory so far: resident set (Linux reports KiB) and, on a GPU, the CUDA
    allocator's peak, the figure that shows what --quantize saves."""
    import resource

    peak = {"process_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device.type == "cuda":
        peak["cuda_allocated"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return peak


def headline(metrics: dict) -> dict:
    """The figures a bundle records: summary, ECE and the hierarchy figures."""
    return {**summary(metrics), "ece": metrics["calibration"]["ece"], **metrics.get("hierarchy", {}), **metrics.get("groups", {})}


def measure_into_info(classifier, splits: dict[str, data_mod.Split], info: BundleInfo) -> BundleInfo:
    """``info`` with the classifier's figures on validation and test (and TF-IDF's beside them)."""
    for name in ("validation", "test"):
        if name not in splits:
            continue
        split = splits[name]
        forms = {name: split.texts}
        if name == "test":
            forms["test (BIGPATENT form)"] = [data_mod.to_bigpatent_form(t) for t in split.texts]
            forms["test (first 200 characters)"] = [short_text_form(t) for t in split.texts]
        for label, texts in forms.items():
            metrics = evaluate_predictions(split.labels, split.codes, classifier.predict(texts), split.groups)
            info.metrics[label] = headline(metrics)
            if classifier.tfidf is not None:  # its TF-IDF partner is the baseline, trained on the same rows
                rows = data_mod.Split(texts=list(texts), labels=split.labels, codes=split.codes)
                info.baselines[label] = headline(baseline_metrics(classifier.tfidf, rows))
    return info
