"""The feedback store: corrections from users, ready to become training rows (table ``feedback`` of
:mod:`patentclf.store.database`, SQLite or PostgreSQL).

* A write acknowledged by :meth:`FeedbackStore.add` has been committed (SQLite: and synced).
* A correction names a section (``G``), a class (``G06``) or a subclass (``G06F``); the row keeps its
  section in ``label`` and the finest code given in ``code``.
* Each row records the name of the API key that sent it (``sender``) and a ``status``: ``accepted``,
  or ``pending`` until a named reviewer accepts or rejects it (feedback from keys such as the web UI's,
  which anyone who can open the UI uses). Exports take accepted rows unless asked otherwise.
* Rows are never deleted; a review sets ``status``, ``reviewed_by`` and ``reviewed_at`` once.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from patentclf.corpus.labels import CODES, parse_label
from patentclf.store.database import Store, feedback, open_store

ACCEPTED, PENDING, REJECTED = "accepted", "pending", "rejected"
# A class (G06) or subclass (G06F) as a correction may give it; sections go through parse_label.
_FINER_CODE = re.compile(r"[A-HY]\d\d[A-Z]?")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def feedback_code(value: object) -> str:
    """A correction's label -> its code: a section letter or id 0..8 (``"g"``, ``6`` -> ``"G"``), a class
    (``"G06"``) or a subclass (``"g06f"`` -> ``"G06F"``). Raises ``ValueError`` for anything else."""
    try:
        return CODES[parse_label(value)]
    except ValueError:
        pass
    if isinstance(value, str) and _FINER_CODE.fullmatch(value.strip().upper()):
        return value.strip().upper()
    raise ValueError(
        f"unknown code {value!r}: expected a section ({', '.join(CODES)}), a class such as G06 or a subclass such as G06F"
    )


class ReviewConflict(Exception):
    """The feedback was already accepted or rejected."""


@dataclass
class Feedback:
    text: str
    label: str  # a section, class or subclass code (see feedback_code)
    prediction_id: str | None = None
    predicted_label: str | None = None
    comment: str | None = None
    model_version: str | None = None
    source: str = "api"
    sender: str | None = None
    status: str = ACCEPTED

    @property
    def code(self) -> str:
        return feedback_code(self.label)

    @property
    def section(self) -> str:
        return self.code[0]

    @property
    def agreed(self) -> bool | None:
        return None if self.predicted_label is None else self.section == self.predicted_label


class FeedbackStore:
    def __init__(self, target: Store | str | Path):
        self.store = open_store(target)

    def add(self, item: Feedback) -> int:
        """Store one correction; returns its id once it is committed."""
        code = item.code  # raises ValueError for an unknown code
        if not item.text.strip():
            raise ValueError("feedback needs the text")
        if item.status not in (ACCEPTED, PENDING):
            raise ValueError(f"new feedback is accepted or pending, not {item.status!r}")
        agreed = None if item.agreed is None else int(item.agreed)
        values = dict(
            time=utc_now(), prediction_id=item.prediction_id, text=item.text, label=code[0], code=code,
            predicted_label=item.predicted_label, agreed=agreed, comment=item.comment, model_version=item.model_version,
            source=item.source, sender=item.sender, status=item.status,
        )  # fmt: skip
        with self.store.write() as conn:
            return int(conn.execute(feedback.insert().values(**values).returning(feedback.c.id)).scalar_one())

    def get(self, feedback_id: int) -> dict | None:
        with self.store.read() as conn:
            row = conn.execute(sa.select(feedback).where(feedback.c.id == feedback_id)).first()
        return dict(row._mapping) if row else None

    def rows(self, status: str | tuple[str, ...] | None = None, *, limit: int | None = None) -> list[dict]:
        """Rows by id, all or those with the given status(es)."""
        query = sa.select(feedback).order_by(feedback.c.id)
        if status is not None:
            query = query.where(feedback.c.status.in_([status] if isinstance(status, str) else status))
        if limit is not None:
            query = query.limit(limit)
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count(self) -> int:
        with self.store.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one())

    def summary(self) -> dict:
        counts = {
            "total": sa.func.count(),
            "agreed": sa.func.count().filter(feedback.c.agreed == 1),
            "disagreed": sa.func.count().filter(feedback.c.agreed == 0),
            "pending": sa.func.count().filter(feedback.c.status == PENDING),
        }
        with self.store.read() as conn:
            row = conn.execute(sa.select(*(c.label(name) for name, c in counts.items()))).one()
        figures = {name: int(value) for name, value in row._mapping.items()}
        judged = figures["agreed"] + figures["disagreed"]
        return {**figures, "agreement_rate": figures["agreed"] / judged if judged else None}

    def review(self, feedback_id: int, *, accept: bool, reviewer: str) -> dict:
        """Accept or reject pending feedback, as ``reviewer``. Raises KeyError (no such row) or
        ReviewConflict (already accepted or rejected)."""
        if not reviewer or not reviewer.strip():
            raise ValueError("a review needs the reviewer's name")
        with self.store.write() as conn:
            done = conn.execute(
                feedback.update()
                .where(feedback.c.id == feedback_id, feedback.c.status == PENDING)
                .values(status=ACCEPTED if accept else REJECTED, reviewed_by=reviewer.strip(), reviewed_at=utc_now())
            ).rowcount
        row = self.get(feedback_id)
        if row is None:
            raise KeyError(feedback_id)
        if not done:
            raise ReviewConflict(f"feedback {feedback_id} is already {row['status']}")
        return row


def training_row(row: dict) -> dict:
    """One stored correction as a training row, shaped like the bundled data: ``id``, ``label`` and ``section``
    (the letter; ``label`` as in earlier exports), ``class`` / ``subclass`` when the correction gave
    them, and ``ipc``, the finest code given."""
    code = row.get("code") or row["label"]
    # An id of its own, so that the rows can also go into a patent index (`patentclf index --add`).
    item = {"id": f"feedback-{row['id']}", "text": row["text"], "label": row["label"], "section": row["label"]}
    if len(code) >= 3:
        item["class"] = code[:3]
    if len(code) == 4:
        item["subclass"] = code
    if len(code) > 1:
        item["ipc"] = code
    item.update(source=f"feedback:{row['id']}", time=row["time"], sender=row.get("sender"), status=row.get("status", ACCEPTED))
    if row.get("reviewed_by"):
        item["reviewed_by"] = row["reviewed_by"]
    return item


def training_rows(store: FeedbackStore, *, disagreed_only: bool = False, include_pending: bool = False) -> list[dict]:
    """Feedback as rows that ``patentclf train --extra-data`` reads. Accepted rows only, unless
    ``include_pending``; rejected rows never."""
    statuses = (ACCEPTED, PENDING) if include_pending else (ACCEPTED,)
    return [training_row(r) for r in store.rows(statuses) if not (disagreed_only and r["agreed"] != 0)]


def export_jsonl(target: str | Path, output: str | Path, *, disagreed_only: bool = False, include_pending: bool = False) -> int:
    """Write the training rows of the database at ``target`` (a SQLite path or a URL) to ``output``
    (JSONL, replaced atomically); returns how many."""
    if "://" not in str(target) and not Path(target).is_file():
        raise FileNotFoundError(f"{target}: no feedback database")
    rows = training_rows(FeedbackStore(target), disagreed_only=disagreed_only, include_pending=include_pending)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(partial, output)
    return len(rows)
