"""Commands that run the model over texts: predict, index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from patentclf.cli.common import (
    Actors,
    BatchSize,
    Classes,
    Compile,
    CpusPerActor,
    Depth,
    Engine,
    Explain,
    Groups,
    LongText,
    Model,
    RayAddress,
    RowsPerBatch,
    SectionsThreshold,
    Similar,
    Subclasses,
    TagSetsOption,
    TextFields,
    Threshold,
    console,
    err,
    fail,
    load_classifier,
    progress_bar,
    steering_options,
    text_fields,
)


def predict(
    texts: Optional[list[str]] = typer.Argument(None, help="patent texts to classify"),
    model: Model = None,
    input: Optional[str] = typer.Option(
        None,
        "--input",
        help="JSONL/CSV/Parquet file of texts (text, or title + abstract); with --engine ray also a folder, a glob or a URI such as s3://...",
    ),
    output: Optional[str] = typer.Option(
        None,
        help="file for --input results, its format by its extension: .jsonl, .csv (lists as JSON text) or .parquet "
        "(default: JSONL on stdout); with --engine ray the folder of Parquet files",
    ),
    text_field: TextFields = None,
    long_text: LongText = "truncate",
    batch_size: BatchSize = None,
    compile: Compile = False,
    engine: Engine = "local",
    vllm_url: Optional[str] = typer.Option(
        None, help="run the model on this vLLM server (`vllm serve EXPORT --runner pooling` of the bundle's merged export)"
    ),
    openvino: bool = typer.Option(
        False,
        "--openvino",
        help="run the backbone with OpenVINO (the openvino extra; exported once, ~1 min): ~1.2x on a bf16 CPU",
    ),
    ray_address: RayAddress = None,
    actors: Actors = 2,
    rows_per_batch: RowsPerBatch = 256,
    cpus_per_actor: CpusPerActor = 1.0,
    gpus_per_actor: Optional[float] = typer.Option(
        None, min=0, help="--engine ray: GPUs per actor (default 1 where the cluster has GPUs, else 0)"
    ),
    index: Optional[Path] = typer.Option(
        None,
        help="patent index (`patentclf index`): its patents are the evidence and vote for the main groups (default: the bundle's)",
    ),
    no_index: bool = typer.Option(False, "--no-index", help="no main groups and no evidence (a little faster)"),
    tags: TagSetsOption = None,
    as_json: bool = typer.Option(False, "--json", help="print each answer as its JSON record (a line of the JSONL output)"),
    classes: Classes = None,
    subclasses: Subclasses = None,
    groups: Groups = None,
    similar: Similar = None,
    threshold: Threshold = None,
    sections_threshold: SectionsThreshold = None,
    depth: Depth = None,
    explain: Explain = False,
) -> None:
    """Predict sections for texts given as arguments or in a file (or, with --engine ray, many files on a cluster)."""
    from patentclf.inference.prediction import output_format

    steer = steering_options(
        classes=classes,
        subclasses=subclasses,
        groups=groups,
        similar=similar,
        threshold=threshold,
        sections_threshold=sections_threshold,
        depth=depth,
        explain=explain or None,
    )
    if engine == "ray" and vllm_url:
        fail("--vllm-url runs in this process: drop --engine ray (Ray actors load the model themselves)")
    if openvino and (engine == "ray" or vllm_url or compile):
        fail("--openvino runs the backbone in this process with OpenVINO: drop --engine ray, --vllm-url and --compile")
    if index and no_index:
        fail("--index and --no-index contradict each other: give one")
    if index is not None and not index.is_dir():
        fail(f"--index {index}: no such folder (build one with `patentclf index`)")
    chosen_index = False if no_index else index
    if engine == "ray":
        if texts or not input or not output:
            fail("--engine ray classifies files: give --input FILES and --output FOLDER (no texts as arguments)")
        options = dict(
            batch_size=batch_size, long_text=long_text, compile=compile, index=chosen_index, options=steer, tags=tags or None
        )
        ray = dict(address=ray_address, actors=actors, rows_per_batch=rows_per_batch, cpus_per_actor=cpus_per_actor)
        _predict_on_ray(input, output, model, text_fields(text_field), **options, **ray, gpus_per_actor=gpus_per_actor)
        return
    if not texts and not input:
        fail("give texts to classify, or --input FILE")
    if output:
        try:  # before the model loads: a wrong name costs nothing
            output_format(output)
        except ValueError as exc:
            fail(f"--output {exc}")
    if input:
        from patentclf.corpus.data import DataError, load_split

        try:
            rows = load_split(input, "test", text_fields=text_fields(text_field), require_labels=False)
        except DataError as exc:
            fail(str(exc))
        items, ids = rows.texts, rows.ids
    else:
        items, ids = list(texts), [None] * len(texts)
        if any(not t.strip() for t in items):
            fail("empty text")
    classifier = load_classifier(model, compile=compile, vllm_url=vllm_url, index=chosen_index, tags=tags, openvino=openvino)
    with progress_bar(disable=not input) as bar:
        task = bar.add_task(f"classifying {len(items)} texts", total=len(items))
        predictions = classifier.predict(
            items, batch_size=batch_size, long_text=long_text, progress=lambda n: bar.advance(task, n), options=steer
        )
    from patentclf.inference.prediction import file_record, prediction_record, write_predictions

    if output:
        write_predictions(output, ids, predictions)
        err.print(f"wrote {len(predictions)} predictions to {output}")
    elif input or as_json:
        for row_id, p in zip(ids, predictions):
            print(json.dumps(({"id": row_id} if row_id is not None else {}) | file_record(prediction_record(p))))
    else:
        for text, p in zip(items, predictions):
            _print_answer(text, p)


def _print_answer(text: str, p) -> None:
    """The section; whether to trust it; the best code of each level with what its probability has
    meant; then every suggestion, one line each."""
    snippet = text if len(text) <= 60 else text[:57] + "..."
    console.print(f"[bold]{p.label}[/] {p.name}  confidence {p.confidence:.3f}  [dim]{escape(snippet)}[/]")
    for reason in p.review_reasons:
        console.print(f"  [yellow]needs review:[/] {escape(reason.message)}", highlight=False)
    if p.evidence_disagrees:
        # The nearest of those that point elsewhere (the flag itself weighs more neighbours than shown).
        leader = next((near.code for near in p.similar if near.code[:1] != p.label), "")
        nearest = f" (nearest: {escape(leader)})" if leader else ""
        console.print(f"  [yellow]the nearest patents point elsewhere[/]{nearest}: check them", highlight=False)
    for answer in p.levels:
        meant = (
            f"  (right {answer.right_share:.0%} of the time at this probability on held-out patents)"
            if answer.right_share is not None
            else ""
        )
        console.print(f"  best {answer.level:<8}  {escape(answer.code):<10}  {answer.probability:.3f}{meant}", highlight=False)
    from patentclf.corpus.labels import SECTIONS

    names = {s.code: s.name for s in SECTIONS}
    lines = [("section", code, p.section_probabilities.get(code, p.confidence), names.get(code, "")) for code in p.sections]
    for level, found in (("class", p.classes), ("subclass", p.subclasses), ("group", p.groups)):
        lines += [(level, s.code, s.probability, s.title) for s in found]
    lines += [("similar", near.id, near.similarity, f"{near.code}  {near.title}") for near in p.similar]
    lines += [("tag", match.name, match.probability, f"({match.set})") for match in p.tags or []]
    width = max((len(code) for _, code, _, _ in lines), default=0)
    for level, code, value, title in lines:
        console.print(f"  {level:<8}  {escape(code):<{width}}  {value:.3f}  {escape(title)}", highlight=False)
    if p.explanation is not None:
        _print_explanation(text, p.explanation)


def _print_explanation(text: str, explanation) -> None:
    """Each explained sentence with what it did to each explained code (+ raised, - lowered)."""
    if not explanation.codes:
        console.print("  explanation: one sentence, nothing to leave out", highlight=False)
        return
    header = "  ".join(f"{c.level} {c.code}" for c in explanation.codes)
    capped = f" (the first {len(explanation.sentences)} of {explanation.sentence_count})" if explanation.capped else ""
    console.print(f"  sentences{capped}, the probability each added:  {escape(header)}", highlight=False)
    for i, span in enumerate(explanation.sentences):
        sentence = text[span.start : span.end]
        snippet = sentence if len(sentence) <= 70 else sentence[:67] + "..."
        effects = "  ".join(f"{c.effects[i]:+.3f}" for c in explanation.codes)
        console.print(f"    {effects}  {escape(snippet)}", highlight=False)


def _predict_on_ray(input: str, output: str, model: Path | None, fields: tuple[str, ...] | None, **options) -> None:
    """``options``: run_bulk's keyword arguments, as the predict command's flags gave them."""
    try:
        from patentclf.jobs.bulk import BulkError, run_bulk
    except ImportError as exc:  # ray is an extra
        fail(f"--engine ray needs Ray ({exc.name} is missing): pip install 'patentclf[ray]'")
    from patentclf.model.base import ModelError

    try:
        result = run_bulk(input, output, model=model, text_fields=fields, **options)
    except (BulkError, ModelError, OSError) as exc:
        fail(str(exc))
    err.print(
        f"wrote {result.written} predictions in {result.seconds:.0f} s; {output} now holds {result.total} "
        "(read it with pandas.read_parquet or patentclf.jobs.bulk.read_predictions)"
    )


def index(
    input: str = typer.Option(
        ...,
        "--input",
        help="JSONL/CSV/Parquet file or folder of classified patents: id, text (or title + abstract), ipc or codes",
    ),
    output: Path = typer.Option(..., help="folder of the index (give it to predict / serve as --index)"),
    model: Optional[Path] = typer.Option(None, help="bundle folder (default: the shipped model); the index is only good for it"),
    text_field: TextFields = None,
    factory: str = typer.Option(
        "SQfp16", help="faiss index: SQfp16 (exact, 2 bytes a dimension) | e.g. IVF4096,PQ64 for millions of patents"
    ),
    add: bool = typer.Option(False, "--add", help="add these patents to the index at --output (accepted feedback, new grants)"),
    fit_on: Optional[str] = typer.Option(
        None,
        help="data (bundled | FILE | FOLDER) whose validation split fits the group voting to this index (default: the bundle's settings)",
    ),
    batch_size: BatchSize = None,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    actors: Actors = 2,
    rows_per_batch: RowsPerBatch = 256,
    cpus_per_actor: CpusPerActor = 1.0,
) -> None:
    """Build a patent index of your own classified patents: they become the evidence of predictions and vote
    for the main groups. A cut-short run, rerun with the same flags, continues where it stopped."""
    from patentclf.corpus.inputs import DataError
    from patentclf.inference.index import PatentIndexError
    from patentclf.jobs.indexing import build_index
    from patentclf.model.base import ModelError

    if engine == "ray" and add:
        fail("--add runs locally (a few thousand rows): drop --engine ray")
    if add and fit_on:
        fail("--fit-on fits a new index; an index you --add to keeps its settings")
    ray = dict(address=ray_address, actors=actors, rows_per_batch=rows_per_batch, cpus_per_actor=cpus_per_actor)
    try:
        from patentclf.jobs.bulk import BulkError
    except ImportError:  # ray is an extra
        BulkError = DataError  # noqa: N806 - nothing raises it without Ray
    try:
        with progress_bar() as bar:
            task = bar.add_task("embedding patents", total=None, visible=engine == "local")
            result = build_index(
                input,
                output,
                model=model,
                engine=engine,
                factory=factory,
                text_fields=text_fields(text_field),
                batch_size=batch_size,
                add=add,
                ray_options=ray if engine == "ray" else None,
                progress=lambda n: bar.advance(task, n),
                fit_on=fit_on,
            )
    except (DataError, PatentIndexError, ModelError, BulkError, OSError) as exc:
        fail(str(exc))
    skipped = f"; {result.skipped} rows without a readable code were left out" if result.skipped else ""
    err.print(f"{output} holds {result.patents} patents ({result.embedded} embedded now, {result.seconds:.0f} s){skipped}")
