"""`patentclf feedback ...`: the feedback store's commands (export, list, review)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from patentclf.cli.common import ConfigFile, console, err, fail, warn

app = typer.Typer(help="The feedback store: corrections sent to POST /feedback.", no_args_is_help=True)


def _feedback_database(db: Optional[str], config_file: Optional[Path]) -> str:
    """--db (a SQLite path or a URL), else the service's settings: database_url, then feedback_db."""
    if db:
        return db
    from patentclf.service import ServiceConfig

    config = ServiceConfig.load(config_file)
    return config.database_url.get_secret_value() if config.database_url else str(config.feedback_db)


Db = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        help="SQLite file or postgresql:// URL (default: env PATENTCLF_DATABASE_URL, PATENTCLF_FEEDBACK_DB, config, the default file)",
    ),
]


@app.command("export")
def feedback_export(
    output: Path = typer.Option(
        ...,
        "--output",
        help="JSONL of training rows: text, section, class/subclass, ipc (every code, main first) if given, source...",
    ),
    db: Db = None,
    config_file: ConfigFile = None,
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
        fail(str(exc))
    from patentclf.store.database import describe_target

    console.print(f"wrote {count} training rows from {describe_target(target)} to {output}")
    if count == 0:
        warn("no accepted feedback yet; training would refuse an empty file")


@app.command("export-tags")
def feedback_export_tags(
    output: Path = typer.Option(..., "--output", help="JSONL examples file: id, text, tags (';'-separated) for `tags fit --add`"),
    tag_set: Optional[str] = typer.Option(
        None, "--set", help="the tag set whose tags to export (needed when the corrections name several)"
    ),
    db: Db = None,
    config_file: ConfigFile = None,
    include_pending: bool = typer.Option(False, help="also feedback still waiting for a reviewer (never rejected feedback)"),
) -> None:
    """Write accepted corrections that name tags as examples for `patentclf tags fit --add FILE --output SET`."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from patentclf.store.database import StoreError, describe_target
    from patentclf.store.feedback import export_tag_examples

    try:
        target = _feedback_database(db, config_file)
        count = export_tag_examples(target, output, tag_set=tag_set, include_pending=include_pending)
    except (ValidationError, ValueError, OSError, SQLAlchemyError, StoreError) as exc:
        fail(str(exc))
    console.print(f"wrote {count} tag examples from {describe_target(target)} to {output}")
    if count == 0:
        warn("no accepted correction names tags" + (f" of set {tag_set!r}" if tag_set else ""))


def _open_feedback(db: Optional[str], config_file: Optional[Path]):
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from patentclf.store.database import StoreError
    from patentclf.store.feedback import FeedbackStore

    try:
        target = _feedback_database(db, config_file)
        if "://" not in target and not Path(target).is_file():
            fail(f"{target}: no feedback database")
        return FeedbackStore(target)
    except (ValidationError, ValueError, OSError, SQLAlchemyError, StoreError) as exc:
        fail(str(exc))


@app.command("list")
def feedback_list(
    status: str = typer.Option("pending", help="pending | accepted | rejected"),
    limit: int = typer.Option(50, help="most rows shown, oldest first"),
    db: Db = None,
    config_file: ConfigFile = None,
) -> None:
    """Show stored feedback: by default what waits for a reviewer."""
    if status not in ("pending", "accepted", "rejected"):
        fail(f"--status must be pending, accepted or rejected, not {status!r}")
    rows = _open_feedback(db, config_file).rows(status, limit=limit)
    table = Table(title=f"{status} feedback ({len(rows)} shown)")
    for column in ("id", "time", "sender", "codes (main first)", "model said", "text", "comment"):
        table.add_column(column)
    for r in rows:
        snippet = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        said = r["predicted_label"] or ""
        table.add_row(str(r["id"]), r["time"][:19], r["sender"] or "", ", ".join(r["codes"]), said, snippet, r["comment"] or "")
    console.print(table)


@app.command("review")
def feedback_review(
    ids: list[int] = typer.Argument(..., help="feedback ids (see `patentclf feedback list`)"),
    accept: Optional[bool] = typer.Option(None, "--accept/--reject", help="accept for training, or reject for good"),
    reviewer: str = typer.Option(..., "--reviewer", help="your name, recorded with the decision"),
    db: Db = None,
    config_file: ConfigFile = None,
) -> None:
    """Accept or reject feedback that waits for a reviewer (e.g. everything sent from the web UI)."""
    from patentclf.store.feedback import ReviewConflict

    if accept is None:
        fail("say --accept or --reject")
    store = _open_feedback(db, config_file)
    failed = False
    for feedback_id in ids:
        try:
            row = store.review(feedback_id, accept=accept, reviewer=reviewer)
            console.print(f"feedback {feedback_id} ({', '.join(row['codes'])}): {row['status']} by {row['reviewed_by']}")
        except KeyError:
            err.print(f"[red]feedback {feedback_id}: no such feedback[/]")
            failed = True
        except (ReviewConflict, ValueError) as exc:
            err.print(f"[red]feedback {feedback_id}: {exc}[/]")
            failed = True
    if failed:
        raise typer.Exit(code=1)
