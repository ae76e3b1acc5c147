"""The ``patentclf`` command line: typer commands that parse flags, call the library and print.

Each module holds a few commands and imports the library inside them, so that ``--help`` and the
first answer of ``predict`` load only what they use.
"""

from __future__ import annotations

import typer

from patentclf.cli import feedback, model, predict, service, tags

app = typer.Typer(
    help="Classify patents into CPC sections, classes, subclasses and main groups with a LoRA-fine-tuned LLM.",
    no_args_is_help=True,
)
app.command()(model.train)
app.command()(model.calibrate)
app.command()(model.evaluate)
app.command()(predict.predict)
app.command("index")(predict.index)
app.command()(model.export)
app.command()(service.ui)
app.command()(service.serve)
app.add_typer(feedback.app, name="feedback")
app.add_typer(tags.app, name="tags")

EXIT_CANNOT_SERVE = service.EXIT_CANNOT_SERVE


def main() -> None:
    app()
