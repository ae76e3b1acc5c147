"""The ``patentclf`` command line: thin typer commands over the library functions."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from patentclf.model.train_config import TrainConfig  # light (pydantic): the train flags are built from it
from patentclf.service.config import ServiceConfig  # light (pydantic-settings): the serve flags are built from it

app = typer.Typer(help="Classify patents into the nine CPC sections with a LoRA-fine-tuned LLM.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")  # escaped: brackets in a message are text, not markup
    raise typer.Exit(code=2)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err)


def _load_classifier(
    model: Optional[Path],
    precision: str = "auto",
    compile: bool = False,
    vllm_url: str | None = None,
    index: Path | bool | None = None,
):
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.index import PatentIndexError
    from patentclf.model.base import ModelError

    try:
        if vllm_url:
            classifier = Classifier.load(model, engine="vllm", vllm_url=vllm_url, index=index or False)
            classifier.engine.check()
            return classifier
        return Classifier.load(model, precision=precision, compile=compile, index=index)
    except PatentIndexError as exc:
        _fail(str(exc))
    except Exception as exc:
        # Compiling at load can fail in inductor (e.g. no C++ compiler: a RuntimeError): say so.
        if compile and not isinstance(exc, (ModelError, OSError)):
            first_line = (str(exc).strip().splitlines() or [""])[0]
            _fail(f"--compile failed ({type(exc).__name__}: {first_line}); run without --compile")
        if isinstance(exc, (ModelError, OSError, ValueError, RuntimeError)):  # RuntimeError: a vLLM server gone
            _fail(str(exc))
        raise


def _settings_flags(settings_cls, skip: tuple[str, ...] = (), names: dict[str, tuple[str, ...]] | None = None):
    """A decorator giving a command one ``--flag`` per field of a pydantic model (type, choices and help
    from the field's declaration; ``names``: other flag names for a field). Flags default to None, "not
    given", so the config file (and, for settings, the environment) still apply; the command receives
    them as keyword arguments."""
    import inspect
    import types
    import typing

    from pydantic import SecretStr
    from pydantic_settings import BaseSettings

    def shown(default) -> str:
        if default is None or default == [] or isinstance(default, SecretStr):
            return ""
        if isinstance(default, bool):
            return "on" if default else "off"
        return " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)

    def flag(name: str, field) -> inspect.Parameter:
        kind = field.annotation
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None -> X
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        kind = str if kind is SecretStr else kind
        dashed = name.replace("_", "-")
        decls = (names or {}).get(name) or ((f"--{dashed}/--no-{dashed}",) if kind is bool else ())
        notes = []
        if issubclass(settings_cls, BaseSettings):
            notes.append(f"env {settings_cls.model_config.get('env_prefix', '')}{name.upper()}")
        if not field.default_factory and shown(field.default):
            notes.append(f"default {shown(field.default)}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        option = typer.Option(
            *decls, help=f"{field.description or name}{extra}", show_default=False, rich_help_panel=panels.get(name)
        )
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typing.Annotated[Optional[kind], option]
        )

    # A panel runs from the field that opens it (settings_cls.panels) to the next one's.
    panels, panel = {}, None
    for name in settings_cls.model_fields:
        panel = getattr(settings_cls, "panels", {}).get(name, panel)
        panels[name] = panel

    def decorate(command):
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        flags = [flag(name, field) for name, field in settings_cls.model_fields.items() if name not in skip]
        command.__signature__ = signature.replace(parameters=own + flags)
        return command

    return decorate


@app.command()
@_settings_flags(
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
        _fail(str(exc))
    from patentclf.corpus.data import DataError
    from patentclf.model.base import ModelError
    from patentclf.training.trainer import TrainingError
    from patentclf.training.trainer import train as run_training

    try:
        out = run_training(config, restart=restart)
    except (DataError, ModelError, TrainingError, ValueError, OSError) as exc:
        _fail(str(exc))
    from patentclf.model.bundle import read_info

    info = read_info(out)
    console.print(f"[green]model bundle written to[/] {out}")
    peak = info.get("training", {}).get("peak_memory_mb", {})
    console.print("  peak memory while training: " + ", ".join(f"{k.replace('_', ' ')} {v:,} MB" for k, v in peak.items()))
    _print_figures(info)


def _print_figures(info: dict) -> None:
    for name, metrics in info.get("metrics", {}).items():
        ece = f", ECE {metrics['ece']:.3f}" if "ece" in metrics else ""
        console.print(f"  {name}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}{ece} (n={metrics['n']})")


@app.command()
def calibrate(
    model: Path = typer.Option(..., help="bundle folder to calibrate in place"),
    data: Optional[str] = typer.Option(None, help="training/validation data (default: the bundle's own)"),
    tfidf: bool = typer.Option(True, "--tfidf/--no-tfidf", help="fit the TF-IDF partner of the blend on the training rows"),
    evaluate: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="then measure validation and test again and rewrite the model card's figures"
    ),
) -> None:
    """Fit a bundle's TF-IDF partner, blend weights, temperatures, confidence map and sections on validation."""
    from patentclf.corpus.data import DataError
    from patentclf.inference.classifier import Classifier
    from patentclf.model.base import ModelError
    from patentclf.model.bundle import read_info, write_info
    from patentclf.training.cards import write_model_card
    from patentclf.training.trainer import TrainConfig, load_training_data, measure_into_info
    from patentclf.training.tuning import calibrate_classifier

    try:
        info = read_info(model)
        trained = info.get("training", {})
        config = TrainConfig(data=data or trained.get("data", "bundled"), seed=trained.get("seed", 42), evaluate_test=evaluate)
        splits = load_training_data(config)
        classifier = Classifier.load(model)
        with console.status(f"calibrating on {len(splits['validation'])} validation rows"):
            info["calibration"] = calibrate_classifier(classifier, splits["train"], splits["validation"], tfidf=tfidf)
        console.print_json(data=info["calibration"])
        if evaluate:  # the card's figures were measured with the old calibration: measure them again
            with console.status("measuring validation and test through the calibrated bundle"):
                info = measure_into_info(classifier, splits, info)
            _print_figures(info)
        write_info(model, info)
        write_model_card(model, info)
    except (DataError, ModelError, ValueError, OSError) as exc:
        _fail(str(exc))


def _read_input_split(
    spec: str, split: str, data_config: str, text_field: Optional[list[str]], text_form: str, require_labels: bool
):
    from patentclf.corpus.data import DataError, load_split, to_bigpatent_form

    try:
        rows = load_split(
            spec,
            split,
            data_config=data_config,
            text_fields=tuple(text_field) if text_field else None,
            require_labels=require_labels,
        )
    except DataError as exc:
        _fail(str(exc))
    if text_form == "bigpatent":
        rows.texts = [to_bigpatent_form(t) for t in rows.texts]
    elif text_form == "short":
        from patentclf.training.evaluation import short_text_form

        rows.texts = [short_text_form(t) for t in rows.texts]
    elif text_form != "original":
        _fail(f"--text-form must be original, bigpatent or short, not {text_form!r}")
    return rows


@app.command()
def evaluate(
    model: Optional[Path] = typer.Option(None, help="bundle folder (default: the shipped model)"),
    data: str = typer.Option("bundled", help="bundled | FILE | FOLDER | hub name"),
    split: str = typer.Option("test"),
    data_config: str = typer.Option("abstract"),
    text_field: Optional[list[str]] = typer.Option(None),
    limit: Optional[int] = typer.Option(None, help="seeded, stratified subset of rows"),
    text_form: str = typer.Option(
        "original", help="original | bigpatent (lowercase, spaced punctuation) | short (first 200 characters, bigpatent)"
    ),
    long_text: str = typer.Option("truncate", help="truncate | chunk"),
    batch_size: Optional[int] = typer.Option(None, help="most texts per model call (default 8 on CPU, 32 on a GPU)"),
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile the model: 30-80 s to start, ~20% faster after (large files)"
    ),
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
    from patentclf.corpus.data import stratified_subset
    from patentclf.corpus.labels import SECTIONS
    from patentclf.training.evaluation import baseline_metrics, evaluate_predictions, fit_baseline, write_report

    rows = stratified_subset(_read_input_split(data, split, data_config, text_field, text_form, True), limit)
    classifier = _load_classifier(model, compile=compile)
    with _progress() as bar:
        task = bar.add_task(f"evaluating {len(rows)} rows", total=len(rows))
        predictions = classifier.predict(
            rows.texts, batch_size=batch_size, long_text=long_text, progress=lambda n: bar.advance(task, n)
        )
    metrics = evaluate_predictions(rows.labels, rows.codes, predictions, rows.groups)
    metrics.update(
        {
            "model": str(classifier.path),
            "model_version": classifier.version,
            "data": rows.source,
            "split": split,
            "text_form": text_form,
            "long_text": long_text,
        }
    )
    reference = None
    if baseline:
        trained_on = classifier.info.get("training", {}).get("data")
        if classifier.tfidf is not None and baseline_data in (None, trained_on):
            # The bundle's TF-IDF partner is this baseline, fitted on the model's own training rows.
            models, source = classifier.tfidf, f"{trained_on} (the bundle's TF-IDF partner)"
        else:
            train_spec = baseline_data or trained_on
            try:
                train_rows = _read_input_split(train_spec, "train", data_config, None, "original", True) if train_spec else None
            except typer.Exit:
                train_rows = None
            models = source = None
            if train_rows is None:
                err.print("no baseline: the bundle does not say what it trained on; pass --baseline-data")
            else:
                with console.status(f"fitting the TF-IDF baseline on {len(train_rows)} rows of {train_rows.source}"):
                    models, source = fit_baseline(train_rows), train_rows.source
        if models is not None:
            reference = baseline_metrics(models, rows)
            metrics["baseline"] = {"model": "TF-IDF (1-2 grams) + logistic regression", "trained_on": source, **reference}
        if "groups" in metrics:
            _group_baseline(metrics, rows, baseline_data or classifier.info.get("training", {}).get("data"), data_config)
            reference = metrics.get("baseline")
    write_report(metrics, output, title=f"{Path(rows.source).name} ({text_form})")

    table = Table(title=f"{rows.source} - {len(rows)} rows - model {classifier.version}")
    for column in ("section", "name", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right" if column not in ("section", "name") else "left")
    for s in SECTIONS:
        c = metrics["per_class"][s.code]
        table.add_row(s.code, s.name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    console.print(table)
    console.print(_comparison_table(metrics, reference))
    console.print(f"wrote {output / 'metrics.json'}, {output / 'confusion_matrix.png'} and {output / 'reliability.png'}")


def _group_baseline(metrics: dict, rows, train_spec: str | None, data_config: str) -> None:
    """The TF-IDF neighbours' main groups on the same rows, into ``metrics["baseline"]["groups"]``."""
    from patentclf.inference.groups import group_figures
    from patentclf.training.evaluation import NEIGHBOUR_BASELINE, tfidf_neighbour_groups

    try:
        train_rows = _read_input_split(train_spec, "train", data_config, None, "original", True) if train_spec else None
    except typer.Exit:
        train_rows = None
    if train_rows is None or not any(train_rows.groups):
        err.print("no main-group baseline: the training rows are unknown or carry no groups; pass --baseline-data")
        return
    with console.status(f"the TF-IDF neighbours baseline over {len(train_rows)} rows of {train_rows.source}"):
        suggested = tfidf_neighbour_groups(train_rows.texts, train_rows.groups, rows.texts)
    baseline = metrics.setdefault("baseline", {})
    baseline["groups"] = group_figures(suggested, rows.groups)
    baseline["groups_model"] = f"TF-IDF (1-2 grams) nearest neighbours voting their groups ({NEIGHBOUR_BASELINE})"


def _comparison_table(metrics: dict, baseline: dict | None) -> Table:
    """The headline figures of the model beside the baseline's on the same rows."""
    table = Table(title="model vs TF-IDF + logistic regression, same rows")
    for column in ("figure", "model", "baseline", "difference"):
        table.add_column(column, justify="left" if column == "figure" else "right")

    def row(name: str, ours: float | None, theirs: float | None) -> None:
        if ours is None:
            return
        cells = [
            f"{ours:.3f}",
            f"{theirs:.3f}" if theirs is not None else "-",
            f"{ours - theirs:+.3f}" if theirs is not None else "-",
        ]
        table.add_row(name, *cells)

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


@app.command()
def predict(
    texts: Optional[list[str]] = typer.Argument(None, help="patent texts to classify"),
    model: Optional[Path] = typer.Option(None, help="bundle folder (default: the shipped model)"),
    input: Optional[str] = typer.Option(
        None,
        "--input",
        help="JSONL/CSV/Parquet file of texts (text, or title + abstract); with --engine ray also a folder, a glob or a URI such as s3://...",
    ),
    output: Optional[str] = typer.Option(
        None, help="JSONL file for --input results (default: stdout); with --engine ray the folder of Parquet files"
    ),
    text_field: Optional[list[str]] = typer.Option(None),
    long_text: Literal["truncate", "chunk"] = typer.Option(
        "truncate", help="text longer than the model's window: read its start, or average overlapping windows"
    ),
    batch_size: Optional[int] = typer.Option(None, min=1, help="most texts per model call (default 8 on CPU, 32 on a GPU)"),
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile the model: 30-80 s to start, ~20% faster after (large files)"
    ),
    engine: Literal["local", "ray"] = typer.Option(
        "local", help="local: this process | ray: a Ray cluster, Parquet files out, resumable"
    ),
    vllm_url: Optional[str] = typer.Option(
        None, help="run the model on this vLLM server (`vllm serve EXPORT --runner pooling` of the bundle's merged export)"
    ),
    ray_address: Optional[str] = typer.Option(
        None, help="Ray cluster to join, e.g. 10.0.0.5:6379 (default: env RAY_ADDRESS, else a local cluster)"
    ),
    actors: int = typer.Option(2, min=1, help="--engine ray: model replicas (Ray actors)"),
    rows_per_batch: int = typer.Option(256, min=1, help="--engine ray: rows an actor classifies and writes at a time"),
    cpus_per_actor: float = typer.Option(1.0, help="--engine ray: CPUs (and torch threads) per actor on CPU clusters"),
    gpus_per_actor: Optional[float] = typer.Option(
        None, min=0, help="--engine ray: GPUs per actor (default 1 where the cluster has GPUs, else 0)"
    ),
    index: Optional[Path] = typer.Option(
        None,
        help="patent index (`patentclf index`): its patents are the evidence and vote for the main groups (default: the bundle's)",
    ),
    no_index: bool = typer.Option(False, "--no-index", help="no main groups and no evidence (a little faster)"),
) -> None:
    """Predict sections for texts given as arguments or in a file (or, with --engine ray, many files on a cluster)."""
    if engine == "ray" and vllm_url:
        _fail("--vllm-url runs in this process: drop --engine ray (Ray actors load the model themselves)")
    if index and no_index:
        _fail("--index and --no-index contradict each other: give one")
    if index is not None and not index.is_dir():
        _fail(f"--index {index}: no such folder (build one with `patentclf index`)")
    chosen_index = False if no_index else index
    if engine == "ray":
        _predict_on_ray(
            texts,
            input,
            output,
            text_field,
            model=model,
            address=ray_address,
            actors=actors,
            rows_per_batch=rows_per_batch,
            cpus_per_actor=cpus_per_actor,
            gpus_per_actor=gpus_per_actor,
            batch_size=batch_size,
            long_text=long_text,
            compile=compile,
            index=chosen_index,
        )
        return
    if not texts and not input:
        _fail("give texts to classify, or --input FILE")
    if input:
        rows = _read_input_split(input, "test", "abstract", text_field, "original", False)
        items, ids = rows.texts, rows.ids
    else:
        items, ids = list(texts), [None] * len(texts)
        if any(not t.strip() for t in items):
            _fail("empty text")
    classifier = _load_classifier(model, compile=compile, vllm_url=vllm_url, index=chosen_index)
    with _progress() as bar:
        task = bar.add_task(f"classifying {len(items)} texts", total=len(items), visible=bool(input))
        predictions = classifier.predict(
            items, batch_size=batch_size, long_text=long_text, progress=lambda n: bar.advance(task, n)
        )
    if not input:
        for text, p in zip(items, predictions):
            snippet = text if len(text) <= 60 else text[:57] + "..."
            console.print(f"[bold]{p.label}[/] {p.name}  confidence {p.confidence:.3f}  [dim]{escape(snippet)}[/]")
            if p.groups:
                best = p.groups[0]
                console.print(f"  main group {best.code} ({best.probability:.2f}) {escape(best.title[:70])}")
            for near in p.similar[:3]:
                console.print(
                    f"  [dim]near {escape(near.id)} ({near.similarity:.2f}) {escape(near.code)} {escape(near.title[:60])}[/]"
                )
        return
    from patentclf.inference.prediction import file_record, prediction_record

    lines = []
    for row_id, p in zip(ids, predictions):
        record = {"id": row_id} if row_id is not None else {}
        lines.append(json.dumps(record | file_record(prediction_record(p))))
    if output:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(lines) + "\n")
        err.print(f"wrote {len(lines)} predictions to {output}")
    else:
        print("\n".join(lines))


def _predict_on_ray(texts, input, output, text_field, **options) -> None:
    """``options``: run_bulk's keyword arguments, as the predict command's flags gave them."""
    if texts or not input or not output:
        _fail("--engine ray classifies files: give --input FILES and --output FOLDER (no texts as arguments)")
    try:
        from patentclf.jobs.bulk import BulkError, run_bulk
    except ImportError as exc:  # ray is an extra
        _fail(f"--engine ray needs Ray ({exc.name} is missing): pip install 'patentclf[ray]'")
    from patentclf.model.base import ModelError

    try:
        result = run_bulk(input, output, text_fields=tuple(text_field) if text_field else None, **options)
    except (BulkError, ModelError, OSError) as exc:
        _fail(str(exc))
    err.print(
        f"wrote {result.written} predictions in {result.seconds:.0f} s; {output} now holds {result.total} "
        "(read it with pandas.read_parquet or patentclf.jobs.bulk.read_predictions)"
    )


@app.command("index")
def index_command(
    input: str = typer.Option(
        ...,
        "--input",
        help="JSONL/CSV/Parquet file or folder of classified patents: id, text (or title + abstract), ipc or codes",
    ),
    output: Path = typer.Option(..., help="folder of the index (give it to predict / serve as --index)"),
    model: Optional[Path] = typer.Option(None, help="bundle folder (default: the shipped model); the index is only good for it"),
    text_field: Optional[list[str]] = typer.Option(None),
    factory: str = typer.Option(
        "SQfp16", help="faiss index: SQfp16 (exact, 2 bytes a dimension) | e.g. IVF4096,PQ64 for millions of patents"
    ),
    add: bool = typer.Option(False, "--add", help="add these patents to the index at --output (accepted feedback, new grants)"),
    fit_on: Optional[str] = typer.Option(
        None,
        help="data (bundled | FILE | FOLDER) whose validation split fits the group voting to this index (default: the bundle's settings)",
    ),
    batch_size: Optional[int] = typer.Option(None, min=1, help="most texts per model call (default 8 on CPU, 32 on a GPU)"),
    engine: Literal["local", "ray"] = typer.Option("local", help="local: this process | ray: a Ray cluster (millions of rows)"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (default: env RAY_ADDRESS, else a local cluster)"),
    actors: int = typer.Option(2, min=1, help="--engine ray: model replicas (Ray actors)"),
    rows_per_batch: int = typer.Option(256, min=1, help="--engine ray: rows an actor embeds and writes at a time"),
    cpus_per_actor: float = typer.Option(1.0, help="--engine ray: CPUs (and torch threads) per actor on CPU clusters"),
) -> None:
    """Build a patent index of your own classified patents: they become the evidence of predictions and vote
    for the main groups. A cut-short run, rerun with the same flags, continues where it stopped."""
    from patentclf.corpus.inputs import DataError
    from patentclf.inference.index import PatentIndexError
    from patentclf.jobs.indexing import build_index
    from patentclf.model.base import ModelError

    if engine == "ray" and add:
        _fail("--add runs locally (a few thousand rows): drop --engine ray")
    if add and fit_on:
        _fail("--fit-on fits a new index; an index you --add to keeps its settings")
    ray_options = {"address": ray_address, "actors": actors, "rows_per_batch": rows_per_batch, "cpus_per_actor": cpus_per_actor}
    try:
        from patentclf.jobs.bulk import BulkError
    except ImportError:  # ray is an extra
        BulkError = DataError  # noqa: N806 - nothing raises it without Ray
    try:
        with _progress() as bar:
            task = bar.add_task("embedding patents", total=None, visible=engine == "local")
            result = build_index(
                input,
                output,
                model=model,
                engine=engine,
                factory=factory,
                text_fields=tuple(text_field) if text_field else None,
                batch_size=batch_size,
                add=add,
                ray_options=ray_options if engine == "ray" else None,
                progress=lambda n: bar.advance(task, n),
                fit_on=fit_on,
            )
    except (DataError, PatentIndexError, ModelError, BulkError, OSError) as exc:
        _fail(str(exc))
    skipped = f"; {result.skipped} rows without a readable code were left out" if result.skipped else ""
    err.print(f"{output} holds {result.patents} patents ({result.embedded} embedded now, {result.seconds:.0f} s){skipped}")


@app.command()
def export(
    model: Optional[Path] = typer.Option(None, help="bundle folder (default: the shipped model)"),
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
        _fail(str(exc))
    console.print(f"[green]merged checkpoint written to[/] {out}")
    console.print("load it with AutoModelForSequenceClassification.from_pretrained; see its README.md for input normalisation")


@app.command()
def ui(
    api_url: str = typer.Option("http://localhost:9000", envvar="PATENTCLF_API_URL", help="the patentclf API the UI talks to"),
    port: int = typer.Option(8501, help="port of the web UI"),
    host: str = typer.Option("localhost", help="address the web UI listens on (0.0.0.0: all interfaces)"),
) -> None:
    """Start the Streamlit web UI against a running API (start that with `patentclf serve`)."""
    import os
    import subprocess

    from patentclf.ui import app_path

    # The UI reads its settings from its environment; PATENTCLF_API_KEY, if set, passes through
    # to the Streamlit process and stays server-side.
    env = {**os.environ, "PATENTCLF_API_URL": api_url}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",  # no e-mail prompt, no browser opened on a server
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    console.print(f"web UI on http://{host}:{port} talking to the API at {api_url}")
    process = subprocess.Popen(command, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too: let it shut down cleanly
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            code = 130
    raise typer.Exit(code=code)


EXIT_CANNOT_SERVE = 3  # serve: the model failed to load, or the service broke while running


@app.command()
@_settings_flags(ServiceConfig)
def serve(
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="YAML/JSON file of service settings (keys: the setting names); env and flags override it"
    ),
    **flags,
) -> None:
    """Serve the model over HTTP (FastAPI + uvicorn); API docs at /docs.

    Each setting: its default < the --config file < the environment < its flag.

    Exits with status 3 when the model cannot be loaded or the service breaks, so that a supervisor restarts it.
    """
    import uvicorn
    from pydantic import ValidationError

    from patentclf.service import create_app

    try:
        config = ServiceConfig.load(config_file, **flags)
    except (ValidationError, ValueError, OSError) as exc:
        _fail(f"service configuration: {exc}")
    from patentclf.model.base import ModelError
    from patentclf.model.bundle import default_model_dir, read_info

    try:  # a wrong --model fails here with one line, not a traceback from inside uvicorn
        read_info(config.model or default_model_dir())
    except ModelError as exc:
        _fail(str(exc))
    if config.database_url:
        from sqlalchemy.exc import ArgumentError

        from patentclf.store.database import StoreError, database_url

        try:  # the same for a URL that names no database patentclf can use
            database_url(config.database_url.get_secret_value())
        except (StoreError, ArgumentError) as exc:
            _fail(f"database_url: {exc}")
    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:  # the service cannot serve: shut down gracefully, then exit non-zero
        server.should_exit = True

    application = create_app(config, on_fatal=stop)
    # uvicorn's access log is off: the service writes its own JSON line per request.
    server = uvicorn.Server(uvicorn.Config(application, host=config.host, port=config.port, access_log=False, log_level="info"))
    server.run()
    runtime = getattr(application.state, "runtime", None)
    if runtime is not None and runtime.fatal_error:
        err.print(f"[bold red]error:[/] {runtime.fatal_error}")
        raise typer.Exit(code=EXIT_CANNOT_SERVE)
    if not server.started:
        raise typer.Exit(code=EXIT_CANNOT_SERVE)  # e.g. the port is taken (uvicorn logged why)


feedback_app = typer.Typer(help="The feedback store: corrections sent to POST /feedback.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


def _feedback_database(db: Optional[str], config_file: Optional[Path]) -> str:
    """--db (a SQLite path or a URL), else the service's settings: database_url, then feedback_db."""
    if db:
        return db
    from patentclf.service import ServiceConfig

    config = ServiceConfig.load(config_file)
    return config.database_url.get_secret_value() if config.database_url else str(config.feedback_db)


def _describe(target: str) -> str:
    from patentclf.store.database import database_url

    return database_url(target).render_as_string(hide_password=True) if "://" in target else target


_DB_HELP = (
    "SQLite file or postgresql:// URL (default: env PATENTCLF_DATABASE_URL, PATENTCLF_FEEDBACK_DB, config, the default file)"
)


@feedback_app.command("export")
def feedback_export(
    output: Path = typer.Option(
        ..., "--output", help="JSONL of training rows: text, section, class/subclass/ipc if given, source..."
    ),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    config_file: Optional[Path] = typer.Option(None, "--config", help="the service's config file (database_url, feedback_db)"),
    disagreed_only: bool = typer.Option(False, help="only corrections where the model was wrong"),
    include_pending: bool = typer.Option(False, help="also feedback still waiting for a reviewer (never rejected feedback)"),
) -> None:
    """Write accepted feedback as training rows for `patentclf train --extra-data FILE`."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from patentclf.store.database import StoreError
    from patentclf.store.feedback import export_jsonl

    try:
        target = _feedback_database(db, config_file)
        count = export_jsonl(target, output, disagreed_only=disagreed_only, include_pending=include_pending)
    except (ValidationError, ValueError, OSError, SQLAlchemyError, StoreError) as exc:
        _fail(str(exc))
    console.print(f"wrote {count} training rows from {_describe(target)} to {output}")
    if count == 0:
        err.print("[yellow]warning:[/] no accepted feedback yet; training would refuse an empty file")


def _open_feedback(db: Optional[str], config_file: Optional[Path]):
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from patentclf.store.database import StoreError
    from patentclf.store.feedback import FeedbackStore

    try:
        target = _feedback_database(db, config_file)
        if "://" not in target and not Path(target).is_file():
            _fail(f"{target}: no feedback database")
        return FeedbackStore(target)
    except (ValidationError, ValueError, OSError, SQLAlchemyError, StoreError) as exc:
        _fail(str(exc))


@feedback_app.command("list")
def feedback_list(
    status: str = typer.Option("pending", help="pending | accepted | rejected"),
    limit: int = typer.Option(50, help="most rows shown, oldest first"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    config_file: Optional[Path] = typer.Option(None, "--config", help="the service's config file"),
) -> None:
    """Show stored feedback: by default what waits for a reviewer."""
    if status not in ("pending", "accepted", "rejected"):
        _fail(f"--status must be pending, accepted or rejected, not {status!r}")
    rows = _open_feedback(db, config_file).rows(status, limit=limit)
    table = Table(title=f"{status} feedback ({len(rows)} shown)")
    for column in ("id", "time", "sender", "code", "model said", "text", "comment"):
        table.add_column(column)
    for r in rows:
        snippet = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        said = r["predicted_label"] or ""
        table.add_row(str(r["id"]), r["time"][:19], r["sender"] or "", r["code"] or r["label"], said, snippet, r["comment"] or "")
    console.print(table)


@feedback_app.command("review")
def feedback_review(
    ids: list[int] = typer.Argument(..., help="feedback ids (see `patentclf feedback list`)"),
    accept: Optional[bool] = typer.Option(None, "--accept/--reject", help="accept for training, or reject for good"),
    reviewer: str = typer.Option(..., "--reviewer", help="your name, recorded with the decision"),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    config_file: Optional[Path] = typer.Option(None, "--config", help="the service's config file"),
) -> None:
    """Accept or reject feedback that waits for a reviewer (e.g. everything sent from the web UI)."""
    from patentclf.store.feedback import ReviewConflict

    if accept is None:
        _fail("say --accept or --reject")
    store = _open_feedback(db, config_file)
    failed = False
    for feedback_id in ids:
        try:
            row = store.review(feedback_id, accept=accept, reviewer=reviewer)
            console.print(f"feedback {feedback_id}: {row['status']} by {row['reviewed_by']}")
        except KeyError:
            err.print(f"[red]feedback {feedback_id}: no such feedback[/]")
            failed = True
        except (ReviewConflict, ValueError) as exc:
            err.print(f"[red]feedback {feedback_id}: {exc}[/]")
            failed = True
    if failed:
        raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
