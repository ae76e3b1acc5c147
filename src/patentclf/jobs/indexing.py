"""``patentclf index``: a corpus of classified patents -> a patent index (``index.py``) of the model's
representations, on this machine or on a Ray cluster, resumable either way.

Both engines first write the vectors as Parquet under ``INDEX/_vectors/`` (``id``, ``title``,
``codes``, ``vector``): the local engine a part file per ``rows_per_part`` rows, the Ray engine (the
job runner with an :class:`Embedder` worker) under ``_vectors/ray`` with its row checkpoints. A rerun
of a cut-short job skips what is written; ``_vectors/_manifest.json`` refuses a rerun with another
model, input or text fields. The vectors are then put into the faiss index in one pass (a compressed
index is trained on them first).
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from patentclf.corpus.data import CODE_FIELDS
from patentclf.corpus.hierarchy import parse_index_codes
from patentclf.corpus.inputs import DataError, clean, peek_columns, read_records, row_id, row_text, text_fields_for
from patentclf.inference.index import (
    BUNDLE_INDEX_DIR,
    DEFAULT_FACTORY,
    INFO_FILE,
    IndexedPatent,
    PatentIndex,
    PatentIndexError,
    check_factory,
    read_index_info,
)
from patentclf.jobs.files import JobError, absolute, check_manifest, filesystem, list_input_files
from patentclf.model.bundle import default_model_dir, model_digest, model_version, read_info
from patentclf.training.cards import write_model_card

if TYPE_CHECKING:  # the runner imports Ray, an extra: the local engine runs without it
    from patentclf.jobs.runner import Cluster, JobResult

VECTORS_DIR = "_vectors"
RAY_DIR = "ray"  # the Ray engine's output, under VECTORS_DIR
MANIFEST = "_manifest.json"
# What must match for a rerun to continue a folder of vectors (the same keys in both manifests,
# _vectors/_manifest.json and the Ray job's, but for the model's name).
INDEX_KEYS = {"model_digest": "model", "input": "input", "text_fields": "text fields"}
RAY_KEYS = {"model_version": "model", "input": "input", "text_fields": "text fields"}
ROWS_PER_PART = 512
VECTOR_SCHEMA = pa.schema(
    [("id", pa.string()), ("title", pa.string()), ("codes", pa.list_(pa.string())), ("vector", pa.list_(pa.float32()))]
)


@dataclass
class IndexResult:
    output: str
    patents: int  # in the index now
    embedded: int  # rows this run put through the model
    skipped: int  # rows without a readable code (not indexed)
    seconds: float


def code_field(columns: set[str]) -> str:
    """The column of a row's codes (``ipc`` or ``codes``): an index is of classified patents."""
    found = next((name for name in CODE_FIELDS if name in columns), None)
    if found is None:
        raise DataError(
            f"no codes column: an index holds classified patents, so rows need 'ipc' or 'codes'; columns are {sorted(columns)}"
        )
    return found


def vector_table(ids: list[str], titles: list[str], codes: list[list[str]], vectors: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "title": pa.array(titles, pa.string()),
            "codes": pa.array(codes, pa.list_(pa.string())),
            "vector": pa.array(list(np.asarray(vectors, np.float32)), pa.list_(pa.float32())),
        },
        schema=VECTOR_SCHEMA,
    )


def _records(fs: pafs.FileSystem, path: str) -> list[dict]:
    try:
        with fs.open_input_file(path) as f:
            return read_records(f, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


def read_corpus(spec: str, text_fields: tuple[str, ...] | None) -> tuple[list[dict], int]:
    """Every row of the corpus (a file, folder or glob) with an id, text and at least one code:
    ``({id, title, text, codes}, skipped)``. A row without an id or text, or a repeated id, is a
    DataError naming it."""
    rows: list[dict] = []
    seen: set[str] = set()
    skipped = 0
    fs, files = list_input_files(spec)
    for path in files:
        records = _records(fs, path)
        if not records:
            continue
        columns = set().union(*(r.keys() for r in records))
        fields = text_fields_for(columns, text_fields, str(path))
        codes_column = code_field(columns)
        for number, record in enumerate(records, start=1):
            patent_id = row_id(record.get("id"))
            if patent_id is None:
                raise DataError(f"{path}: row {number}: no id; an index names its patents by id")
            if patent_id in seen:
                raise DataError(f"{path}: row {number}: id {patent_id!r} repeats; ids must be unique")
            seen.add(patent_id)
            text = row_text(record, fields)
            if not text:
                raise DataError(f"{path}: row {number}: empty text in {'+'.join(fields)}")
            codes = parse_index_codes(clean(record.get(codes_column)))
            if not codes:
                skipped += 1
                continue
            rows.append({"id": patent_id, "title": clean(record.get("title")), "text": text, "codes": codes})
    return rows, skipped


def _check_folder(folder: Path, manifest: dict) -> None:
    """A folder holds one job's vectors: a rerun of the same job continues, another is refused."""
    fs, path = filesystem(str(folder))
    try:
        check_manifest(fs, path, manifest, INDEX_KEYS, what="vectors", name=MANIFEST)
    except JobError as exc:
        raise PatentIndexError(str(exc)) from None


@dataclass(frozen=True)
class EmbedOptions:
    """What each :class:`Embedder` actor is told."""

    model: str
    text_fields: tuple[str, ...]
    codes_column: str
    source: str  # the input as given, for errors


class Embedder:
    """One Ray actor of the index job: loads the bundle once, then gives each row's representation,
    title and codes."""

    def __init__(self, options: EmbedOptions, device: str | None, threads: int | None):
        import torch

        from patentclf.inference.classifier import Classifier

        if threads:
            torch.set_num_threads(threads)
        self.options = options
        self.classifier = Classifier.load(options.model, device=device, index=False)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from patentclf.jobs.runner import batch_texts  # in an actor: Ray is there

        o = self.options
        vectors = self.classifier.embed(batch_texts(batch, o.text_fields, o.source))
        titles = [t or "" for t in batch["title"].to_pylist()] if "title" in batch.column_names else [""] * batch.num_rows
        codes = [parse_index_codes(c) for c in batch[o.codes_column].to_pylist()]
        return vector_table(batch["id"].to_pylist(), titles, codes, vectors)


def embed_on_ray(input: str, output: str, *, model: Path, text_fields: tuple[str, ...] | None, cluster: Cluster) -> JobResult:
    """The index job on Ray: every row's vector, title and codes into Parquet files under ``output``, resumable."""
    from patentclf.jobs.runner import Job, plan_input, run_job

    fs, files, fields = plan_input(input, text_fields)
    try:
        codes_column = code_field(set().union(*(peek_columns(fs, f) for f in files)))
    except DataError as exc:
        raise JobError(str(exc)) from None
    manifest = {"model": str(model), "model_version": model_version(model), "input": absolute(input), "text_fields": list(fields)}
    job = Job(
        "index",
        Embedder,
        EmbedOptions(str(model), fields, codes_column, input),
        tuple(dict.fromkeys((*fields, "title", codes_column))),
        manifest,
        RAY_KEYS,
        what="vectors",
    )
    return run_job(job, fs, files, output, cluster)


def embed_locally(
    classifier, rows: list[dict], folder: Path, *, rows_per_part: int, batch_size: int | None, progress=None
) -> int:
    """Vectors of ``rows`` into part files under ``folder``, skipping the parts already written; rows embedded."""
    embedded = 0
    for number, start in enumerate(range(0, len(rows), rows_per_part)):
        part = folder / f"part-{number:06d}.parquet"
        chunk = rows[start : start + rows_per_part]
        if part.is_file():
            if progress:
                progress(len(chunk))
            continue
        vectors = classifier.embed([r["text"] for r in chunk], batch_size=batch_size)
        table = vector_table([r["id"] for r in chunk], [r["title"] for r in chunk], [r["codes"] for r in chunk], vectors)
        staging = part.with_name(f".{part.name}.partial")  # a name the dataset reader skips
        pq.write_table(table, staging)
        os.replace(staging, part)  # a part is there whole or not at all
        embedded += len(chunk)
        if progress:
            progress(len(chunk))
    return embedded


def read_vectors(folder: Path, skip: set[str] = frozenset()) -> tuple[np.ndarray, list[IndexedPatent], int]:
    """Every vector under ``folder`` of a row with codes, one per id, but those in ``skip``, and how many
    rows had no codes (files and folders named ``_...`` or ``.``..., such as the bulk job's
    ``_checkpoint``, are not read)."""
    import pyarrow.dataset as pads

    table = pads.dataset(str(folder), format="parquet", schema=VECTOR_SCHEMA).to_table()
    seen: set[str] = set(skip)
    keep, unclassified = [], 0
    for position, (patent_id, codes) in enumerate(zip(table["id"].to_pylist(), table["codes"].to_pylist())):
        if not codes:  # unclassified rows are not indexed
            unclassified += 1
        elif patent_id not in seen:  # an id once
            seen.add(patent_id)
            keep.append(position)
    table = table.take(pa.array(keep, pa.int64()))
    vectors = np.asarray(table["vector"].to_pylist(), np.float32) if keep else np.zeros((0, 0), np.float32)
    patents = [IndexedPatent(r["id"], r["title"] or "", r["codes"]) for r in table.select(["id", "title", "codes"]).to_pylist()]
    return vectors, patents, unclassified


def fit_group_voting(
    index: PatentIndex,
    vectors: np.ndarray,
    subclass_probabilities: np.ndarray | None,
    subclass_codes: list[str],
    truth: list[list[str]],
    *,
    tables: dict[str, np.ndarray] | None = None,
    class_codes: list[str] | None = None,
    codes: list[list[str]] | None = None,
) -> dict:
    """Fit the index's group voting on labelled rows (their representations, the model's subclass
    probabilities and their main groups); the figures before and after, as stored in ``index.voting``.
    With the answer's coherent ``tables`` (section, class, subclass), ``class_codes`` and the rows'
    ``codes``, the share of the neighbours' votes in the class and subclass suggestions is fitted too
    (``hierarchy.fit_mixes``), after the group settings."""
    from dataclasses import replace

    from patentclf.corpus.hierarchy import targets
    from patentclf.inference.groups import GRID, GroupVoting, fit_voting, group_figures, suggested_codes
    from patentclf.inference.hierarchy import fit_mixes

    similarities, rows = index.search(vectors, max(GRID["k"]))
    fitted, _ = fit_voting(index.groups, similarities, rows, subclass_probabilities, subclass_codes, truth)

    def figures(voting: GroupVoting) -> dict:
        suggested = suggested_codes(voting, index.groups, similarities, rows, subclass_probabilities, subclass_codes)
        return group_figures(suggested, truth)

    index.voting = {
        **fitted.to_dict(),
        "fitted_on": len(truth),
        "figures": figures(fitted),
        "default_figures": figures(GroupVoting()),
    }
    if tables is not None and codes is not None and "class" in tables and "subclass" in tables:
        found = [targets(row) for row in codes]
        class_mix, subclass_mix, mixed = fit_mixes(
            tables,
            class_codes or [],
            subclass_codes,
            [patent.codes for patent in index.patents],
            similarities,
            rows,
            fitted,
            [t.main_class if t else None for t in found],
            [t.main_subclass if t else None for t in found],
        )
        index.voting.update(replace(fitted, class_mix=class_mix, subclass_mix=subclass_mix).to_dict())
        index.voting["hierarchy_figures"] = mixed
    return index.voting


def fit_on_split(classifier, index: PatentIndex, split) -> dict:
    """:func:`fit_group_voting` on a labelled split, its outputs computed by ``classifier``."""
    if not any(split.groups):
        raise DataError(
            f"{split.source}: no row has a main group (codes down to the group, e.g. G06F 3/048) to fit the voting on"
        )
    raw = classifier.raw_outputs(split.texts)
    tables = classifier.calibrated(raw, split.texts)
    return fit_group_voting(
        index,
        raw["embedding"],
        tables.get("subclass"),
        classifier.layout.subclasses,
        split.groups,
        tables=tables,
        class_codes=classifier.layout.classes,
        codes=split.codes,
    )


def bundle_voting(model_path: Path) -> dict:
    """The group voting settings fitted with the bundle's own index (defaults where it has none)."""
    from patentclf.inference.groups import GroupVoting

    voting = (read_index_info(model_path / BUNDLE_INDEX_DIR) or {}).get("voting", {})
    return GroupVoting.from_dict(voting).to_dict()  # the settings, not the bundle index's own figures


def build_index(
    input: str,
    output: str | Path,
    *,
    model: str | Path | None = None,
    engine: str = "local",
    factory: str = DEFAULT_FACTORY,
    text_fields: tuple[str, ...] | None = None,
    batch_size: int | None = None,
    rows_per_part: int = ROWS_PER_PART,
    add: bool = False,
    ray_options: dict | None = None,
    progress=None,
    fit_on: str | None = None,
) -> IndexResult:
    """Index every classified row of ``input`` into ``output`` (see the module's doc). ``add``: add the
    rows to the index already at ``output`` (accepted feedback, a new batch), keeping its patents.
    ``fit_on``: data whose validation split fits the group voting to this index (default: the
    bundle's own index's settings)."""
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, not {engine!r}")
    if rows_per_part < 1:
        raise ValueError("rows per part must be positive")
    start = time.perf_counter()
    model_path = Path(model) if model else default_model_dir()
    info = read_info(model_path)  # a wrong --model fails before any work (ModelError)
    digest = model_digest(model_path)
    output = Path(output)
    existing = None
    if add:
        existing = PatentIndex.load(output, model_digest=digest)
    elif (output / INFO_FILE).is_file():
        raise PatentIndexError(f"{output} already holds an index: pass --add to add these patents to it, or use a new folder")
    known = {p.id for p in existing.patents} if existing is not None else set()  # an indexed patent stays as it is
    folder = output / (VECTORS_DIR if existing is None else f"{VECTORS_DIR}-add")
    source = absolute(input)
    manifest = {"model_digest": digest, "input": source, "text_fields": list(text_fields or ())}
    if engine == "ray":
        from patentclf.jobs.runner import Cluster

        cluster = Cluster(**(ray_options or {}))
        _check_folder(folder, manifest)
        result = embed_on_ray(input, str(folder / RAY_DIR), model=model_path, text_fields=text_fields, cluster=cluster)
        embedded, skipped = result.written, None
    else:
        from patentclf.inference.classifier import Classifier

        rows, skipped = read_corpus(input, text_fields)  # bad input fails before the model loads
        rows = [r for r in rows if r["id"] not in known]
        _check_folder(folder, manifest)
        classifier = Classifier.load(model_path, index=False)
        check_factory(factory, int(classifier.engine.model.config.hidden_size))
        embedded = embed_locally(classifier, rows, folder, rows_per_part=rows_per_part, batch_size=batch_size, progress=progress)
    vectors, patents, unclassified = read_vectors(folder, known)
    if skipped is None:  # the Ray job embeds every row; those without codes are left out here
        skipped = unclassified
    if not patents and existing is None:
        raise DataError(f"{input}: no row with a readable code to index")
    if existing is None:
        index = PatentIndex.build(vectors, patents, model_digest=digest, factory=factory)
        index.voting = bundle_voting(model_path)
        if fit_on:
            from patentclf.corpus.data import load_split
            from patentclf.inference.classifier import Classifier

            fit_on_split(Classifier.load(model_path, index=False), index, load_split(fit_on, "validation"))
    else:
        index = existing
        if len(patents):
            index.add(vectors, patents)
    index.history.append(
        {
            "action": "added" if existing is not None else "built",
            "date": datetime.date.today().isoformat(),
            "input": source,
            "engine": engine,
            "embedded": embedded,
            "patents": len(patents),
            "seconds": round(time.perf_counter() - start),
        }
    )
    index.save(output)
    shutil.rmtree(folder)  # the index holds every vector now
    if output.resolve() == (model_path / BUNDLE_INDEX_DIR).resolve():  # the bundle's own index: its card tells of it
        write_model_card(model_path, info)
    return IndexResult(str(output), len(index), embedded, skipped, time.perf_counter() - start)
