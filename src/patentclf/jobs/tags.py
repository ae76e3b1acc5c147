"""``patentclf tags fit``: a file of examples (a text, or title + abstract, and a ``tags`` column of
``;``-separated names) -> the examples' representations -> a tag set (``inference/tags.py``, fitted by
``training/tags.py``) in a folder.

Every check of the file comes first, before the model loads: a one-line error names the file and the
row. The work happens in ``<output>.partial``: the vectors go there as part files (the index job's
``embed_locally``, so a cut-short run, rerun with the same flags, continues; its manifest refuses
another model or input), then the tag set and its examples, and only then is the folder put in place
of ``<output>`` (the old set, with ``--add``, stays whole until that moment). With ``add``, the set's
stored examples keep their vectors: only the new rows go through the model; a row whose id (or, with
no id, whose text) is stored already replaces that example.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from patentclf.corpus.inputs import DataError, read_local_records, row_id, row_text, text_fields_for
from patentclf.inference.tags import EXAMPLES_FILE, MIN_EXAMPLES, TagSet, TagSetError, read_tag_set_info
from patentclf.jobs.files import JobError, absolute, check_manifest, filesystem
from patentclf.jobs.indexing import ROWS_PER_PART, embed_locally
from patentclf.model.bundle import default_model_dir, model_digest, read_info
from patentclf.training.tags import few_examples, fit_tag_set, split_tags

TAGS_COLUMN = "tags"
VECTORS_DIR = "_vectors"
MANIFEST = "_manifest.json"
MANIFEST_KEYS = {"model_digest": "model", "input": "input", "text_fields": "text fields"}
EXAMPLES_SCHEMA = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("tags", pa.list_(pa.string())), ("vector", pa.list_(pa.float32()))]
)


@dataclass
class TagFitResult:
    output: str
    tag_set: TagSet
    examples: int  # rows the set is fitted on
    embedded: int  # rows this run put through the model
    few: dict[str, int] = field(default_factory=dict)  # tags with fewer than FEW_EXAMPLES examples
    seconds: float = 0.0


def example_key(patent_id: str | None, text: str) -> str:
    """What identifies an example across fits: its id, or the digest of its text."""
    return patent_id if patent_id is not None else "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_examples(path: str | Path, text_fields: tuple[str, ...] | None = None) -> list[dict]:
    """The rows of an examples file: ``{key, id, text, tags, row}``. A DataError of one line naming the
    file and row: no text or tags column, an empty text, an empty tag name (``a;;b``)."""
    return examples_of(read_local_records(path), str(path), text_fields)


def examples_of(records: list[dict], source: str, text_fields: tuple[str, ...] | None = None) -> list[dict]:
    """:func:`read_examples` of rows already read (``source`` names them in errors)."""
    if not records:
        raise DataError(f"{source}: no rows")
    columns = set().union(*(r.keys() for r in records))
    fields = text_fields_for(columns, text_fields, source)
    if TAGS_COLUMN not in columns:
        raise DataError(
            f"{source}: no '{TAGS_COLUMN}' column: give each row its tags, ';'-separated; columns are {sorted(columns)}"
        )
    rows = []
    for number, record in enumerate(records, start=1):
        text = row_text(record, fields)
        if not text:
            raise DataError(f"{source}: row {number}: empty text in {'+'.join(fields)}")
        tags = split_tags(record.get(TAGS_COLUMN))
        if any(tag == "" for tag in tags):
            raise DataError(f"{source}: row {number}: an empty tag name in {record.get(TAGS_COLUMN)!r}")
        patent_id = row_id(record.get("id"))
        rows.append({"key": example_key(patent_id, text), "id": patent_id, "text": text, "tags": tags, "row": number})
    return rows


def check_counts(rows: list[dict], source: str) -> None:
    """Each tag needs ``MIN_EXAMPLES`` examples, and rows without it: one line naming a row that has it."""
    if not any(r["tags"] for r in rows):
        raise DataError(f"{source}: no row has a tag")
    first: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for r in rows:
        for tag in r["tags"]:
            first.setdefault(tag, r)
            counts[tag] = counts.get(tag, 0) + 1
    for tag, count in counts.items():
        where = first[tag]
        place = (
            f"{where.get('source', source)}: row {where['row']}"
            if where.get("row")
            else f"{source}: stored example {where['id']!r}"
        )
        if count < MIN_EXAMPLES:
            raise DataError(f"{place}: tag {tag!r} has {count} example; each tag needs at least {MIN_EXAMPLES}")
        if count == len(rows):
            raise DataError(f"{place}: tag {tag!r} is on every row; give rows without it too (examples of other tags)")


def read_stored_examples(folder: Path) -> list[dict]:
    """The examples a tag set was fitted on, with their vectors."""
    path = folder / EXAMPLES_FILE
    if not path.is_file():
        raise TagSetError(f"{folder}: no {EXAMPLES_FILE} (the examples of a fit): --add needs them; fit anew")
    rows = pq.read_table(path).to_pylist()
    return [{**r, "key": r["id"], "row": None} for r in rows]  # a stored id is the example's key


def examples_table(rows: list[dict], vectors: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([r["key"] if r["id"] is None else r["id"] for r in rows], pa.string()),
            "text": pa.array([r["text"] for r in rows], pa.string()),
            "tags": pa.array([r["tags"] for r in rows], pa.list_(pa.string())),
            "vector": pa.array(list(np.asarray(vectors, np.float32)), pa.list_(pa.float32())),
        },
        schema=EXAMPLES_SCHEMA,
    )


def _read_parts(folder: Path) -> dict[str, np.ndarray]:
    """The vectors embedded so far, by example key."""
    import pyarrow.dataset as pads

    if not folder.is_dir():
        return {}
    table = pads.dataset(str(folder), format="parquet").to_table(columns=["id", "vector"])
    return {key: np.asarray(vector, np.float32) for key, vector in zip(table["id"].to_pylist(), table["vector"].to_pylist())}


def _publish(staging: Path, output: Path) -> None:
    """``staging`` becomes ``output``; an old ``output`` is removed only once the new one is in place."""
    old = output.with_name(output.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        os.replace(output, old)
    os.replace(staging, output)
    shutil.rmtree(old, ignore_errors=True)


def fit_tags(
    examples: str | Path | None,
    output: str | Path,
    *,
    model: str | Path | None = None,
    add: str | Path | None = None,
    name: str | None = None,
    text_fields: tuple[str, ...] | None = None,
    batch_size: int | None = None,
    rows_per_part: int = ROWS_PER_PART,
    classifier=None,
    progress=None,
) -> TagFitResult:
    """Fit the tag set of ``examples`` into ``output``; or, with ``add`` (a file of more examples), refit
    the set at ``output`` with its stored examples and these (``examples`` may then be None). See the
    module's doc. ``classifier``: an already loaded one of ``model`` (the service's)."""
    start = time.perf_counter()
    output = Path(output)
    model_path = Path(model) if model else (classifier.path if classifier is not None else default_model_dir())
    read_info(model_path)  # a wrong --model fails before any work (ModelError)
    digest = model_digest(model_path)
    stored: list[dict] = []
    history: list[dict] = []
    if add is not None:
        info = read_tag_set_info(output)
        if info is None:
            raise TagSetError(f"{output}: no tag set to add to (fit one first, without --add)")
        existing = TagSet.load(output, model_digest=digest)
        stored, history, name = read_stored_examples(output), existing.history, name or existing.name
    elif read_tag_set_info(output) is not None:
        raise TagSetError(
            f"{output} already holds a tag set: pass --add FILE to refit it with more examples, or use a new folder"
        )
    sources = [s for s in (examples, add) if s is not None]
    if not sources:
        raise ValueError("give a file of examples")
    new: list[dict] = []
    for source in sources:
        rows = read_examples(source, text_fields)
        for r in rows:
            r["source"] = str(source)
        new.extend(rows)
    by_key = {r["key"]: r for r in stored}
    for r in new:  # a new row of a stored example replaces it (its tags corrected); its vector is kept if the text is
        old = by_key.get(r["key"])
        if old is not None and old["text"] == r["text"]:
            r["vector"] = old["vector"]
        by_key[r["key"]] = r
    rows = list(by_key.values())
    check_counts(rows, str(sources[-1]))
    staging = output.with_name(output.name + ".partial")
    vectors_dir = staging / VECTORS_DIR
    todo = [r for r in rows if r.get("vector") is None]
    manifest = {"model_digest": digest, "input": [absolute(str(s)) for s in sources], "text_fields": list(text_fields or ())}
    fs, path = filesystem(str(vectors_dir))
    try:
        check_manifest(fs, path, manifest, MANIFEST_KEYS, what="vectors", name=MANIFEST)
    except JobError as exc:
        raise TagSetError(str(exc)) from None
    embedded = 0
    if todo:
        if classifier is None:
            from patentclf.inference.classifier import Classifier

            classifier = Classifier.load(model_path, index=False)
        parts = [{"id": r["key"], "title": "", "text": r["text"], "codes": []} for r in todo]
        embedded = embed_locally(
            classifier, parts, vectors_dir, rows_per_part=rows_per_part, batch_size=batch_size, progress=progress
        )
        found = _read_parts(vectors_dir)
        for r in todo:
            r["vector"] = found[r["key"]]
    vectors = np.stack([np.asarray(r["vector"], np.float32) for r in rows])
    tag_set = fit_tag_set(vectors, [r["tags"] for r in rows], name=name or output.name, model_digest=digest, history=history)
    tag_set.history[-1].update({"input": [str(s) for s in sources], "embedded": embedded})
    folder = staging / "set"
    shutil.rmtree(folder, ignore_errors=True)
    tag_set.save(folder)
    pq.write_table(examples_table(rows, vectors), folder / EXAMPLES_FILE)
    shutil.rmtree(vectors_dir)  # the examples file holds every vector now
    published = staging.with_name(staging.name + "-set")
    shutil.rmtree(published, ignore_errors=True)
    os.replace(folder, published)
    shutil.rmtree(staging)
    _publish(published, output)
    return TagFitResult(
        str(output), tag_set, len(rows), embedded, few_examples([r["tags"] for r in rows]), time.perf_counter() - start
    )
