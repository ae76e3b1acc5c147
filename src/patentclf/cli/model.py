"""Commands that make or measure a bundle: train, calibrate, evaluate, export."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from patentclf.cli.common import (
    BatchSize,
    Compile,
    DataConfig,
    LongText,
    Model,
    TextFields,
    console,
    fail,
    load_classifier,
    print_figures,
    progress_bar,
    settings_flags,
    text_fields,
    warn,
)
from patentclf.model.train_config import TrainConfig  # light (pydantic): the train flags are built from it


@settings_flags(
    TrainConfig, skip=("command",), names={"output_dir": ("--output-dir", "--output"), "text_fields": ("--text-field",)}
)
def train(
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="YAML/JSON file of settings (keys: the setting names, see configs/); flags override it"
    ),
    restart: bool = typer.Option(False, "--restart", help="delete checkpoints of a different run and start over"),
    **flags,
) -> None:
    """Fine-tune a base model with LoRA and write a model bundle.

    Each setting: its default < the --config file < its flag. Every value is checked before anything loads.
    """
    try:
        config = TrainConfig.load(config_file, **flags, command="patentclf " + shlex.join(sys.argv[1:]))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    from patentclf.corpus.data import DataError
    from patentclf.model.base import ModelError
    from patentclf.model.bundle import read_info
    from patentclf.training.trainer import TrainingError
    from patentclf.training.trainer import train as run_training

    try:
        out = run_training(config, restart=restart)
    except (DataError, ModelError, TrainingError, ValueError, OSError) as exc:
        fail(str(exc))
    info = read_info(out)
    console.print(f"[green]model bundle written to[/] {out}")
    peak = info.training.peak_memory_mb if info.training else {}
    console.print("  peak memory while training: " + ", ".join(f"{k.replace('_', ' ')} {v:,} MB" for k, v in peak.items()))
    print_figures(info)


def calibrate(
    model: Path = typer.Option(..., help="bundle folder to calibrate in place"),
    data: Optional[str] = typer.Option(
        None, help="training/validation data (default: the bundle's own, with its training settings)"
    ),
    tfidf: bool = typer.Option(True, "--tfidf/--no-tfidf", help="fit the TF-IDF partner of the blend on the training rows"),
    evaluate: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="then measure validation and test again and rewrite the model card's figures"
    ),
) -> None:
    """Fit a bundle's TF-IDF partner, blend weights, temperatures, confidence map and sections on the rows
    it was trained and tuned on (its recorded data, text fields, limits and extra data)."""
    from patentclf.corpus.data import DataError
    from patentclf.model.base import ModelError
    from patentclf.training.recalibrate import recalibrate_bundle

    try:
        with console.status(f"recalibrating {model}"):
            info = recalibrate_bundle(model, data=data, tfidf=tfidf, evaluate=evaluate)
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(str(exc))
    console.print_json(data=info.calibration)
    if evaluate:
        print_figures(info)


def evaluate(
    model: Model = None,
    data: str = typer.Option("bundled", help="bundled | FILE | FOLDER | hub name"),
    split: str = typer.Option("test", help="the split to measure: train | validation | test"),
    data_config: DataConfig = "abstract",
    text_field: TextFields = None,
    limit: Optional[int] = typer.Option(None, help="seeded, stratified subset of rows"),
    text_form: Annotated[
        Literal["original", "bigpatent", "short"],
        typer.Option(help="original | bigpatent (lowercase, spaced punctuation) | short (first 200 characters, bigpatent)"),
    ] = "original",
    long_text: LongText = "truncate",
    batch_size: BatchSize = None,
    compile: Compile = False,
    baseline: bool = typer.Option(
        True, "--baseline/--no-baseline", help="also score TF-IDF + logistic regression on the same rows"
    ),
    baseline_data: Optional[str] = typer.Option(
        None, help="training data of the baseline (default: the bundle's own training data)"
    ),
    output: Path = typer.Option(
        Path("outputs/evaluation"), help="folder for metrics.json, confusion_matrix.png and reliability.png"
    ),
) -> None:
    """Evaluate a bundle beside a TF-IDF baseline: sections, calibration (ECE) and, where the rows
    carry codes, every section, classes and subclasses. Writes metrics.json and the pictures."""
    from patentclf.corpus.data import DataError
    from patentclf.training.evaluate import evaluate_bundle, evaluation_rows
    from patentclf.training.evaluation import write_report

    try:
        rows = evaluation_rows(
            data, split, data_config=data_config, text_fields=text_fields(text_field), text_form=text_form, limit=limit
        )
    except DataError as exc:
        fail(str(exc))
    classifier = load_classifier(model, compile=compile)
    try:
        with progress_bar() as bar:
            task = bar.add_task(f"evaluating {len(rows)} rows", total=len(rows))
            result = evaluate_bundle(
                classifier,
                rows,
                split=split,
                text_form=text_form,
                long_text=long_text,
                batch_size=batch_size,
                baseline=baseline,
                baseline_data=baseline_data,
                data_config=data_config,
                progress=lambda n: bar.advance(task, n),
            )
    except DataError as exc:  # --baseline-data that cannot be read
        fail(f"--baseline-data: {exc}")
    for skipped in result.skipped:
        warn(skipped)
    write_report(result.metrics, output, title=f"{Path(rows.source).name} ({text_form})")
    console.print(_per_section_table(result.metrics, f"{rows.source} - {len(rows)} rows - model {classifier.version}"))
    console.print(_comparison_table(result.metrics, result.baseline))
    console.print(f"wrote {output / 'metrics.json'}, {output / 'confusion_matrix.png'} and {output / 'reliability.png'}")


def _per_section_table(metrics: dict, title: str) -> Table:
    from patentclf.corpus.labels import SECTIONS

    table = Table(title=title)
    for column in ("section", "name", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column in ("section", "name") else "right")
    for s in SECTIONS:
        c = metrics["per_class"][s.code]
        table.add_row(s.code, s.name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    return table


def _comparison_table(metrics: dict, baseline: dict | None) -> Table:
    """The headline figures of the model beside the baseline's on the same rows."""
    table = Table(title="model vs TF-IDF + logistic regression, same rows")
    for column in ("figure", "model", "baseline", "difference"):
        table.add_column(column, justify="left" if column == "figure" else "right")

    def row(name: str, ours: float | None, theirs: float | None) -> None:
        if ours is not None:
            missing = theirs is None
            table.add_row(name, f"{ours:.3f}", "-" if missing else f"{theirs:.3f}", "-" if missing else f"{ours - theirs:+.3f}")

    base = baseline or {}
    row("accuracy", metrics["accuracy"], base.get("accuracy"))
    row("macro-F1", metrics["macro_f1"], base.get("macro_f1"))
    row("weighted-F1", metrics["weighted_f1"], base.get("weighted_f1"))
    row("ECE (lower is better)", metrics["calibration"]["ece"], base.get("calibration", {}).get("ece"))
    ours, theirs = metrics.get("hierarchy") or {}, base.get("hierarchy") or {}
    for key in ours:
        if key != "n":
            row(key.replace("_", " "), ours[key], theirs.get(key))
    for key, value in (metrics.get("groups") or {}).items():  # beside the TF-IDF neighbours
        row(key.replace("_", " "), value, (base.get("groups") or {}).get(key))
    return table


def export(
    model: Model = None,
    merged: Path = typer.Option(..., "--merged", help="output folder for the merged transformers checkpoint"),
    dtype: str = typer.Option("float32", help="float32 (same predictions as the bundle) | bfloat16 | float16"),
) -> None:
    """Export a bundle as a plain transformers checkpoint (LoRA merged; loads without peft)."""
    from patentclf.model.base import ModelError
    from patentclf.model.bundle import default_model_dir
    from patentclf.training.export import export_merged

    try:
        out = export_merged(model or default_model_dir(), merged, dtype=dtype)
    except (ModelError, OSError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]merged checkpoint written to[/] {out}")
    console.print("load it with AutoModelForSequenceClassification.from_pretrained; see its README.md for input normalisation")
