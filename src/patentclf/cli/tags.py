"""`patentclf tags ...`: a user's own categories learnt from a few examples (tag sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from patentclf.cli.common import BatchSize, Model, TextFields, console, err, fail, progress_bar, text_fields, warn

app = typer.Typer(help="Your own categories (tags), learnt from a few example patents each.", no_args_is_help=True)


@app.command("fit")
def tags_fit(
    output: Path = typer.Option(..., "--output", help="folder of the tag set (give it to predict / serve as --tags)"),
    examples: Optional[Path] = typer.Option(
        None,
        "--examples",
        help="JSONL/CSV/Parquet file of examples: text (or title + abstract) and tags (';'-separated names); "
        "rows without tags are examples of none",
    ),
    add: Optional[Path] = typer.Option(
        None, "--add", help="refit the tag set at --output with these rows too (its stored examples are not recomputed)"
    ),
    name: Optional[str] = typer.Option(None, help="the set's name in answers (default: the --output folder's name)"),
    model: Model = None,
    text_field: TextFields = None,
    batch_size: BatchSize = None,
) -> None:
    """Fit a tag set: one small model per tag over the patent model's representation, with cross-validated
    precision, recall and F1 per tag. A cut-short run, rerun with the same flags, continues."""
    from patentclf.corpus.inputs import DataError
    from patentclf.inference.tags import FEW_EXAMPLES, TagSetError
    from patentclf.jobs.files import JobError
    from patentclf.jobs.tags import fit_tags
    from patentclf.model.base import ModelError

    if examples is None and add is None:
        fail("give --examples FILE (a new tag set), or --add FILE (more examples for the set at --output)")
    try:
        with progress_bar() as bar:
            task = bar.add_task("embedding examples", total=None)
            result = fit_tags(
                examples,
                output,
                model=model,
                add=add,
                name=name,
                text_fields=text_fields(text_field),
                batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
            )
    except (DataError, TagSetError, ModelError, JobError, OSError) as exc:
        fail(str(exc))
    tag_set = result.tag_set
    table = Table(title=f"tag set {tag_set.name!r}: cross-validated figures at each tag's threshold")
    for column in ("tag", "examples", "threshold", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column == "tag" else "right")
    for tag, threshold in zip(tag_set.tags, tag_set.thresholds):
        f = tag_set.figures[tag]
        table.add_row(
            escape(tag), str(f["examples"]), f"{threshold:.3f}", f"{f['precision']:.3f}", f"{f['recall']:.3f}", f"{f['f1']:.3f}"
        )
    console.print(table)
    for tag, count in result.few.items():
        warn(f"tag {tag!r} has {count} examples: its figures rest on few rows; {FEW_EXAMPLES} or more (ideally 10-20) fit better")
    err.print(
        f"{output} holds {len(tag_set.tags)} tags fitted on {result.examples} examples ({result.embedded} embedded now, {result.seconds:.0f} s)"
    )
