"""The feedback store: corrections from users, ready to become training rows (table ``feedback`` of
:mod:`patentclf.store.database`, SQLite or PostgreSQL).

* A write acknowledged by :meth:`FeedbackStore.add` has been committed (SQLite: and synced).
* A correction names a section (``G``), a class (``G06``) or a subclass (``G06F``) as its ``label``,
  or several codes down to main groups (``G06F 3/00``), main code first, as its ``codes``. The row
  keeps the main code's section in ``label``, the main code in ``code`` and every code, main first,
  in ``codes`` (JSON); rows from before ``codes`` read back as their one code.
* Each row records the name of the API key that sent it (``sender``) and a ``status``: ``accepted``,
  or ``pending`` until a named reviewer accepts or rejects it (feedback from keys such as the web UI's,
  which anyone who can open the UI uses). Exports take accepted rows unless asked otherwise.
* A correction may also name the patent's tags (a user's own categories, ``patentclf tags fit``): a
  list of ``{"set", "name"}``, kept as JSON in ``tags``; accepted ones become examples of their set
  (:func:`export_tag_examples`, for ``tags fit --add``).
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

from patentclf.corpus.hierarchy import CodeError, canonical_code
from patentclf.corpus.labels import CODES, parse_label
from patentclf.store.database import Store, feedback, open_store

ACCEPTED, PENDING, REJECTED = "accepted", "pending", "rejected"
# A class (G06) or subclass (G06F) as a correction may give it; sections go through parse_label.
_FINER_CODE = re.compile(r"[A-HY]\d\d[A-Z]?")
MAX_CODES = 20  # codes one correction may give
MAX_TAGS = 20  # tags one correction may give


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


def feedback_codes(values: object) -> list[str]:
    """A correction's codes, main code first -> CPC's spelling (see ``hierarchy.canonical_code``),
    duplicates removed: ``["g06f3/00", "H04N", "G06F 3/00"]`` -> ``["G06F 3/00", "H04N"]``. Raises
    ``ValueError`` naming the first bad code, for no codes, or for more than :data:`MAX_CODES`."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ValueError(f"codes must be a list of codes, not {type(values).__name__}")
    if not values:
        raise ValueError("codes is empty: give at least the main code")
    if len(values) > MAX_CODES:
        raise ValueError(f"{len(values)} codes: at most {MAX_CODES}")
    codes: list[str] = []
    for value in values:
        try:
            code = canonical_code(value)
        except CodeError as exc:
            raise ValueError(str(exc)) from None
        if code not in codes:
            codes.append(code)
    return codes


def feedback_tags(values: object) -> list[dict]:
    """A correction's tags -> ``[{"set", "name"}]``, each stripped, each once, in order. Raises
    ``ValueError`` for an empty set or name, a name with ``;`` (the examples files' separator), or more
    than :data:`MAX_TAGS`."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"tags must be a list of {{set, name}}, not {type(values).__name__}")
    if len(values) > MAX_TAGS:
        raise ValueError(f"{len(values)} tags: at most {MAX_TAGS}")
    tags: list[dict] = []
    for value in values:
        item = value if isinstance(value, dict) else {"set": getattr(value, "set", None), "name": getattr(value, "name", None)}
        tag = {"set": str(item.get("set") or "").strip(), "name": str(item.get("name") or "").strip()}
        if not tag["set"] or not tag["name"]:
            raise ValueError(f"a tag needs a set and a name, not {value!r}")
        if ";" in tag["name"]:
            raise ValueError(f"tag name {tag['name']!r}: ';' separates tags in examples files")
        if tag not in tags:
            tags.append(tag)
    return tags


def check_sections_agree(label: str, codes: list[str]) -> None:
    """A correction that gives a ``label`` and ``codes`` must name one main section in both."""
    if label[0] != codes[0][0]:
        raise ValueError(
            f"label {label!r} is in section {label[0]} but the main code {codes[0]!r} (the first of codes) is in "
            f"section {codes[0][0]}: send one section, or leave label out"
        )


def stored_codes(row: dict) -> list[str]:
    """A stored row's codes, main code first: its ``codes`` (JSON), else (rows from before codes) its one code."""
    codes = row.get("codes")
    if isinstance(codes, str) and codes:
        codes = json.loads(codes)
    if isinstance(codes, list) and codes:
        return codes
    return [row.get("code") or row["label"]]


class ReviewConflict(Exception):
    """The feedback was already accepted or rejected."""


@dataclass
class Feedback:
    text: str
    label: str | int | None = None  # a section, class or subclass code (see feedback_code); or give codes
    prediction_id: str | None = None
    predicted_label: str | None = None
    comment: str | None = None
    model_version: str | None = None
    source: str = "api"
    sender: str | None = None
    status: str = ACCEPTED
    codes: list[str] | None = None  # several codes down to main groups, main first (see feedback_codes)
    tags: list[dict] | None = None  # the patent's own tags, [{"set", "name"}] (see feedback_tags)

    @property
    def all_codes(self) -> list[str]:
        """Every code, main first, in CPC's spelling: ``codes``, or the one code of ``label``. Raises
        ``ValueError`` for a bad code, neither given, or a label of another section than the main code."""
        if self.codes is None:
            if self.label is None:
                raise ValueError("feedback needs a label or codes")
            return [feedback_code(self.label)]
        codes = feedback_codes(self.codes)
        if self.label is not None:
            check_sections_agree(feedback_code(self.label), codes)
        return codes

    @property
    def code(self) -> str:
        """The main code: a section, class, subclass or (given in ``codes``) main group."""
        return self.all_codes[0]

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
        codes = item.all_codes  # raises ValueError for an unknown code
        code = codes[0]
        tags = feedback_tags(item.tags) if item.tags is not None else None
        if not item.text.strip():
            raise ValueError("feedback needs the text")
        if item.status not in (ACCEPTED, PENDING):
            raise ValueError(f"new feedback is accepted or pending, not {item.status!r}")
        agreed = None if item.agreed is None else int(item.agreed)
        values = dict(
            time=utc_now(), prediction_id=item.prediction_id, text=item.text, label=code[0], code=code, codes=json.dumps(codes),
            predicted_label=item.predicted_label, agreed=agreed, comment=item.comment, model_version=item.model_version,
            source=item.source, sender=item.sender, status=item.status, tags=json.dumps(tags) if tags else None,
        )  # fmt: skip
        with self.store.write() as conn:
            return int(conn.execute(feedback.insert().values(**values).returning(feedback.c.id)).scalar_one())

    @staticmethod
    def _read(row) -> dict:
        """A stored row as a dict, its ``codes`` a list (main code first; one code for rows from before codes)."""
        item = dict(row._mapping)
        item["codes"] = stored_codes(item)
        tags = item.pop("tags", None)
        if tags:  # only a row that names tags has the key (rows read as they did before tags)
            item["tags"] = json.loads(tags)
        return item

    def get(self, feedback_id: int) -> dict | None:
        with self.store.read() as conn:
            row = conn.execute(sa.select(feedback).where(feedback.c.id == feedback_id)).first()
        return self._read(row) if row else None

    def rows(self, status: str | tuple[str, ...] | None = None, *, limit: int | None = None) -> list[dict]:
        """Rows by id, all or those with the given status(es)."""
        query = sa.select(feedback).order_by(feedback.c.id)
        if status is not None:
            query = query.where(feedback.c.status.in_([status] if isinstance(status, str) else status))
        if limit is not None:
            query = query.limit(limit)
        with self.store.read() as conn:
            return [self._read(r) for r in conn.execute(query)]

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
    (the letter; ``label`` as in earlier exports), ``class`` / ``subclass`` of the main code when the
    correction gave them, and ``ipc``: every code given, main first, ``;``-separated as in the USPTO
    data (``G06F 3/00; H04N``), which training and a patent index read. A lone section gives no ``ipc``
    (such a row keeps its section label only, as before)."""
    codes = stored_codes(row)
    main = codes[0]
    # An id of its own, so that the rows can also go into a patent index (`patentclf index --add`).
    item = {"id": f"feedback-{row['id']}", "text": row["text"], "label": row["label"], "section": row["label"]}
    if len(main) >= 3:
        item["class"] = main[:3]
    if len(main) >= 4:
        item["subclass"] = main[:4]
    if len(codes) > 1 or len(main) > 1:
        item["ipc"] = "; ".join(codes)
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
    rows = training_rows(_existing_store(target), disagreed_only=disagreed_only, include_pending=include_pending)
    return _write_jsonl(rows, output)


def _existing_store(target: str | Path) -> FeedbackStore:
    """The store at ``target``, refusing a SQLite path with no database (rather than creating one)."""
    if "://" not in str(target) and not Path(target).is_file():
        raise FileNotFoundError(f"{target}: no feedback database")
    return FeedbackStore(target)


def _write_jsonl(rows: list[dict], output: str | Path) -> int:
    """``rows`` as JSONL in ``output``, replaced atomically; returns how many."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(partial, output)
    return len(rows)


def tag_examples(store: FeedbackStore, *, tag_set: str | None = None, include_pending: bool = False) -> list[dict]:
    """Corrections that name tags, as rows of an examples file for ``patentclf tags fit --add``: ``id``
    (``feedback-<id>``), ``text`` and ``tags`` (the set's names, ``;``-separated). ``tag_set``: that
    set's tags only (rows naming none of its tags are left out); None: the one set the rows name (a
    ValueError naming them when they name several). Accepted rows only, unless ``include_pending``."""
    statuses = (ACCEPTED, PENDING) if include_pending else (ACCEPTED,)
    rows = [r for r in store.rows(statuses) if r.get("tags")]
    sets = sorted({t["set"] for r in rows for t in r["tags"]})
    if tag_set is None and len(sets) > 1:
        raise ValueError(f"the corrections name several tag sets ({', '.join(sets)}): choose one")
    chosen = tag_set if tag_set is not None else (sets[0] if sets else None)
    examples = []
    for r in rows:
        names = [t["name"] for t in r["tags"] if t["set"] == chosen]
        if names:
            examples.append(
                {"id": f"feedback-{r['id']}", "text": r["text"], "tags": ";".join(names), "source": f"feedback:{r['id']}"}
            )
    return examples


def export_tag_examples(
    target: str | Path, output: str | Path, *, tag_set: str | None = None, include_pending: bool = False
) -> int:
    """Write :func:`tag_examples` of the database at ``target`` to ``output`` (JSONL, replaced
    atomically); returns how many rows."""
    return _write_jsonl(tag_examples(_existing_store(target), tag_set=tag_set, include_pending=include_pending), output)
