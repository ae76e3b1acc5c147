"""Bulk classification on a Ray cluster: files of patents in, Parquet files of predictions out.

``run_bulk(input, output)`` reads JSONL / CSV / Parquet files with Ray Data, classifies them in
``map_batches`` over a pool of actors that each load the bundle once with :class:`Classifier` (a GPU
each where the cluster has GPUs), and writes Parquet files under ``output`` with the fields of
``patentclf predict --input``'s JSONL lines, keyed by each row's ``id``. It adds no prediction logic:
every row's fields come from ``Classifier.predict``, and each file is read by the rules of
``patentclf predict`` (:mod:`patentclf.corpus.inputs`: ids and text fields as text).

A rerun after an interruption finishes the rest: Ray Data's row checkpoints (``output/_checkpoint``,
ids only) record which rows are written, with a two-phase commit, so the rerun removes any file
whose write was cut short, skips the rows already written and classifies only the others. No row is
written twice as long as one run writes to ``output`` at a time; ids must be unique, which is checked
before the job starts (:func:`check_unique_ids`). An output folder belongs to one job
(``_patentclf.json``: the model, the input and the options that change a prediction); a run with
another model, input or text options is refused before anything starts.

Needs the ``ray`` extra (``pip install 'patentclf[ray]'``): importing this module imports Ray Data.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

from patentclf.corpus.data import rows_to_split
from patentclf.corpus.inputs import FORMATS, DataError, check_columns, file_format, peek_columns, read_rows, text_fields_for
from patentclf.inference.prediction import OLD_LABEL_NAME, prediction_table

CHECKPOINT_DIR = "_checkpoint"  # a leading "_": pandas / pyarrow readers of the folder skip it
MANIFEST = "_patentclf.json"
# Ray counts CPUs as scheduling slots. Reading and writing are light next to the model, so their
# tasks ask for a fraction of one, and the model actors get the rest.
LIGHT_CPUS = 0.25
# On a rerun Ray Data filters the rows already written in actors of one CPU slot each (its own
# setting, not ours), one pool per read operator: the input is read as one dataset, so there is one
# pool, held at one actor (a binary search per row is plenty fast); more would take slots the model
# actors need and can stall the run.
FILTER_CPUS = 1.0


class BulkError(ValueError):
    """A bulk run cannot start or stopped on bad input; the message says why."""


@dataclass
class BulkResult:
    output: str
    written: int  # rows classified and written by this run
    total: int  # rows in the output now
    seconds: float


# --- where files are ---------------------------------------------------------------------------


def _filesystem(spec: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path on it: ``s3://...`` and other URIs, or a local path."""
    if "://" in spec:
        try:
            return pafs.FileSystem.from_uri(spec)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise BulkError(f"{spec}: {exc}") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(spec))


def _exists(fs: pafs.FileSystem, path: str) -> pafs.FileType:
    return fs.get_file_info(path).type


def list_input_files(spec: str) -> tuple[pafs.FileSystem, list[str]]:
    """The JSONL / CSV / Parquet files named by a file, a folder (read recursively; names starting
    with ``_`` or ``.`` are skipped, as pyarrow does) or a glob such as ``data/*.jsonl``."""
    fs, path = _filesystem(spec)
    try:
        if any(ch in path for ch in "*?["):
            parts = path.split("/")
            first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
            base = "/".join(parts[:first]) or "/"
            recursive = "**" in path or first < len(parts) - 1
            selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
            found = [
                f.path for f in fs.get_file_info(selector) if f.type == pafs.FileType.File and fnmatch.fnmatchcase(f.path, path)
            ]
            if not found:
                raise BulkError(f"{spec}: no file matches")
        elif _exists(fs, path) == pafs.FileType.Directory:
            found = [
                f.path
                for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                if f.type == pafs.FileType.File
                and not any(part.startswith(("_", ".")) for part in f.path[len(path) :].split("/"))
            ]
        elif _exists(fs, path) == pafs.FileType.File:
            found = [path]
        else:
            raise BulkError(f"{spec}: no such file or folder")
    except OSError as exc:  # unreachable storage, no permission
        raise BulkError(f"{spec}: {exc}") from None
    unsupported = sorted({Path(f).suffix or Path(f).name for f in found if Path(f).suffix.lower() not in FORMATS})
    files = sorted(f for f in found if Path(f).suffix.lower() in FORMATS)
    if not files:
        extra = f" (found {', '.join(unsupported)})" if unsupported else ""
        raise BulkError(f"{spec}: no {', '.join(FORMATS)} files{extra}")
    return fs, files


# --- reading -----------------------------------------------------------------------------------


class PatentFiles(FileBasedDatasource):
    """JSONL / CSV / Parquet files as one Ray Data source, each read by :func:`inputs.read_rows`. One source,
    so one read operator: Ray Data puts a checkpoint filter behind each read operator, and each
    filter holds a CPU slot."""

    def __init__(self, paths: list[str], filesystem: pafs.FileSystem, fields: tuple[str, ...]):
        super().__init__(paths, filesystem=filesystem)
        self.fields = fields

    def _open_input_source(self, filesystem, path: str, **open_args):
        if file_format(path) == "parquet":  # the footer first: Parquet needs a file it can seek in
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        yield from read_rows(f, path, self.fields)


def plan_input(spec: str, text_fields: tuple[str, ...] | None) -> tuple[pafs.FileSystem, list[str], tuple[str, ...]]:
    """The input's files and the text fields to read, checked before any cluster starts: every file
    has an ``id`` and a text column (``text``, or ``title`` + ``abstract``, or ``text_fields``)."""
    fs, files = list_input_files(spec)
    with ThreadPoolExecutor(max_workers=16) as pool:  # one small read per file; remote stores are slow
        found = list(pool.map(lambda f: peek_columns(fs, f), files))
    try:
        fields = text_fields_for(set().union(*found), tuple(text_fields) if text_fields else None, spec)
        for path, columns in zip(files, found):
            if columns:  # an empty file adds no rows
                check_columns(columns, fields, path)
    except DataError as exc:
        raise BulkError(str(exc)) from None
    return fs, files, fields


MAX_NAMED_IDS = 3  # repeated ids an error names


def require_ids(ids: pa.Array | pa.ChunkedArray, where: str) -> None:
    """Every row has an id that is not blank."""
    if ids.null_count or pc.any(pc.equal(pc.utf8_trim_whitespace(ids), "")).as_py():
        raise DataError(f"{where}: a row has no id; bulk classification keys every row by its 'id'")


def _file_ids(fs: pafs.FileSystem, path: str) -> pa.ChunkedArray:
    opener = fs.open_input_file if file_format(path) == "parquet" else fs.open_input_stream
    if fs.get_file_info(path).size == 0:  # an empty file adds no rows (and a CSV of 0 bytes has no header)
        return pa.chunked_array([], pa.string())
    try:
        with opener(path) as f:
            tables = list(read_rows(f, path, ()))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
    return pa.chunked_array([t["id"] for t in tables], pa.string())


def check_unique_ids(fs: pafs.FileSystem, files: list[str]) -> int:
    """Every row has an id and no id repeats, across all ``files``; the number of rows.

    Rows are keyed by id: the checkpoints that let a rerun skip the rows already written, and
    :func:`read_predictions`, would each keep one row of a repeated id and drop the other without a
    word. So a repeated id refuses the job before it starts. Reads the id column of every file (for
    JSONL and CSV, the whole file: a small cost beside classifying it)."""
    with ThreadPoolExecutor(max_workers=16) as pool:  # remote stores are slow: read files side by side
        per_file = list(pool.map(lambda path: _file_ids(fs, path), files))
    for path, ids in zip(files, per_file):
        require_ids(ids, path)
    counts = pc.value_counts(pa.chunked_array([chunk for ids in per_file for chunk in ids.chunks], pa.string()))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        named = repeated.slice(0, MAX_NAMED_IDS).to_pylist()
        values = pa.array([item["values"] for item in named], pa.string())
        where = [Path(path).name for path, ids in zip(files, per_file) if pc.any(pc.is_in(ids, value_set=values)).as_py()]
        shown = ", ".join(f"{item['values']!r} ({item['counts']} rows)" for item in named)
        more = f" and {len(repeated) - len(named)} more" if len(repeated) > len(named) else ""
        raise DataError(
            f"ids must be unique, and {len(repeated)} repeat: {shown}{more}, in {', '.join(where)}. Each row's "
            "prediction is stored and resumed by its id, so a repeated id would lose a row"
        )
    return sum(len(ids) for ids in per_file)


def batch_texts(batch: pa.Table, fields: tuple[str, ...], source: str) -> list[str]:
    """The texts of a batch, built and checked the way `patentclf predict --input` builds them."""
    ids = batch["id"]
    require_ids(ids, source)
    records = batch.select(list(fields)).to_pylist()
    try:
        return rows_to_split(records, source, text_fields=fields, require_labels=False).texts
    except DataError:
        for row_id, record in zip(ids.to_pylist(), records):  # name the row by its id, not its place in a batch
            rows_to_split([record], f"{source}: id {row_id!r}", text_fields=fields, require_labels=False)
        raise


class Predictor:
    """One Ray actor: loads the bundle once, then classifies batch after batch."""

    def __init__(self, model: str, fields: tuple[str, ...], source: str, options: dict, threads: int | None):
        import torch

        from patentclf.inference.classifier import Classifier

        if threads:
            torch.set_num_threads(threads)
        self.fields, self.source = fields, source
        self.batch_size, self.long_text = options["batch_size"], options["long_text"]
        self.classifier = Classifier.load(
            model,
            device=options["device"],
            precision=options["precision"],
            compile=options["compile"],
            index=options.get("index"),
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch_texts(batch, self.fields, self.source)
        predictions = self.classifier.predict(texts, batch_size=self.batch_size, long_text=self.long_text)
        return prediction_table(batch["id"], predictions)


class Embedder(Predictor):
    """One Ray actor of ``patentclf index``: each row's representation, title and codes (see ``indexing``)."""

    def __init__(self, model: str, fields: tuple[str, ...], source: str, options: dict, threads: int | None):
        self.text_fields, self.codes_column = options["text_fields"], options["codes_column"]
        super().__init__(model, self.text_fields, source, options, threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from patentclf.corpus.hierarchy import parse_index_codes
        from patentclf.jobs.indexing import vector_table

        texts = batch_texts(batch, self.text_fields, self.source)
        vectors = self.classifier.embed(texts, batch_size=self.batch_size, long_text=self.long_text)
        titles = [t or "" for t in batch["title"].to_pylist()] if "title" in batch.column_names else [""] * len(texts)
        codes = [parse_index_codes(c) for c in batch[self.codes_column].to_pylist()]
        return vector_table(batch["id"].to_pylist(), titles, codes, vectors)


# --- the output folder -------------------------------------------------------------------------


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _parquet_rows(fs: pafs.FileSystem, folder: str, skip_suffix: str | None = None) -> int:
    """Rows in the Parquet files directly in ``folder`` (from their footers; no data is read)."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    total = 0
    for info in infos:
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith(("_", ".")):
            continue
        if skip_suffix and name.endswith(skip_suffix):
            continue
        with fs.open_input_file(info.path) as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def _holds_parquet(fs: pafs.FileSystem, folder: str) -> bool:
    return any(info.base_name.endswith(".parquet") for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)))


# What must match for a rerun to continue a job's folder: whatever changes a row's prediction, and the rows.
JOB_KEYS = {
    "job": "job",
    "model_version": "model",
    "input": "input",
    "text_fields": "text fields",
    "long_text": "long text",
    "index": "index",
}


def _check_manifest(fs: pafs.FileSystem, out: str, manifest: dict) -> None:
    """An output folder holds one job's predictions: a rerun of the same job continues it, and a run
    with another model, input or text options is refused; a folder of someone else's Parquet files
    is refused too. A folder with a manifest but no predictions yet is taken over."""
    kind = _exists(fs, out)
    if kind == pafs.FileType.File:
        raise BulkError(f"{out} is a file; --output names a folder for the Parquet files")
    path = _join(out, MANIFEST)
    written = kind == pafs.FileType.Directory and (_holds_parquet(fs, out) or _holds_parquet(fs, _join(out, CHECKPOINT_DIR)))
    if _exists(fs, path) == pafs.FileType.File and written:
        with fs.open_input_stream(path) as f:
            before = json.loads(f.read())
        changed = [
            f"{label} {before.get(key)!r} -> {manifest[key]!r}"
            for key, label in JOB_KEYS.items()
            if before.get(key, "predict" if key == "job" else None) != manifest[key]  # older manifests: predictions
        ]
        if changed:
            raise BulkError(
                f"{out} holds another job's predictions ({'; '.join(changed)}): write to a new folder, "
                "or delete this one to start over"
            )
        return
    if written:
        raise BulkError(f"{out} already holds Parquet files that no patentclf bulk run wrote; write to a new folder")
    fs.create_dir(out, recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(manifest, indent=2).encode())


def read_predictions(output: str | Path) -> pa.Table:
    """Every prediction under ``output`` as one table, one row per id (the first, should a file have
    been copied in twice)."""
    import pyarrow.dataset as pads

    fs, out = _filesystem(str(output))
    table = pads.dataset(out, format="parquet", filesystem=fs).to_table()
    if OLD_LABEL_NAME in table.column_names:  # written by an older patentclf: the section is `label` now
        table = table.rename_columns(["label" if name == OLD_LABEL_NAME else name for name in table.column_names])
    ids = table["id"].to_pylist()
    if len(set(ids)) == len(ids):
        return table
    seen: set = set()
    return table.filter(pa.array([not (i in seen or seen.add(i)) for i in ids]))


# --- running -----------------------------------------------------------------------------------


def _connect(address: str | None, cpus_needed: float) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start one on this machine; True if this
    call connected (and so must disconnect)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BulkError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        return True
    # A cluster of this machine alone, for this job: every core, and at least the slots the job asks for.
    ray.init(num_cpus=max(os.cpu_count() or 1, int(cpus_needed + 0.999)), include_dashboard=False, _node_ip_address="127.0.0.1")
    return True


def _user_error(exc: BaseException | None) -> DataError | None:
    """The DataError that stopped a Ray task, if one did: the innermost, since Ray wraps it (the
    wrappers are DataErrors too, but their text is a whole traceback)."""
    found = None
    for _ in range(8):
        if exc is None:
            break
        if isinstance(exc, DataError):
            found = exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return found


def run_bulk(
    input: str,
    output: str,
    *,
    model: str | Path | None = None,
    address: str | None = None,
    actors: int = 2,
    rows_per_batch: int = 256,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float | None = None,
    batch_size: int | None = None,
    long_text: str = "truncate",
    precision: str = "auto",
    compile: bool = False,
    text_fields: tuple[str, ...] | None = None,
    job: str = "predict",
    index: str | Path | bool | None = None,
) -> BulkResult:
    """Classify every row of ``input`` into Parquet files under ``output`` (see the module's doc).

    ``actors``: model replicas; ``rows_per_batch``: rows an actor classifies and Ray writes at a time;
    ``gpus_per_actor``: default 1 where the cluster has GPUs, else 0; each actor also holds
    ``cpus_per_actor`` CPUs (and as many torch threads on a CPU); ``batch_size``, ``long_text``,
    ``precision``, ``compile``: as for ``Classifier``. Bad input, a wrong model or a folder of another
    job raise :class:`BulkError` (or ``ModelError``) before any cluster starts where they can.
    ``job="index"``: each row's representation, title and codes instead (``patentclf index``).
    ``index``: the patent index of the predictions' groups and evidence (as for ``Classifier.load``)."""
    from patentclf.inference.classifier import LONG_TEXT_MODES
    from patentclf.model.bundle import default_model_dir, model_version, read_info

    if actors < 1 or rows_per_batch < 1 or cpus_per_actor <= 0 or (gpus_per_actor or 0) < 0:
        raise BulkError("actors, rows per batch and CPUs per actor must be positive (GPUs per actor not negative)")
    if long_text not in LONG_TEXT_MODES:
        raise BulkError(f"long_text must be one of {LONG_TEXT_MODES}, not {long_text!r}")
    model_path = Path(model) if model else default_model_dir()
    read_info(model_path)  # a wrong --model fails here, before any cluster starts (ModelError)
    if job not in ("predict", "index"):
        raise BulkError(f"job must be predict or index, not {job!r}")
    in_fs, files, fields = plan_input(input, text_fields)
    try:
        check_unique_ids(in_fs, files)
        read_fields, worker = fields, Predictor
        if job == "index":
            from patentclf.jobs.indexing import code_field

            columns = set().union(*(peek_columns(in_fs, f) for f in files))
            codes_column = code_field(columns)
            read_fields = tuple(dict.fromkeys((*fields, "title", codes_column)))
            worker = Embedder
    except DataError as exc:
        raise BulkError(str(exc)) from None
    out_fs, out = _filesystem(output)
    source = input if "://" in input else os.path.abspath(os.path.expanduser(input))
    manifest = {
        "job": job,
        "model": str(model_path),
        "model_version": model_version(model_path),
        "input": source,
        "text_fields": list(fields),
        "long_text": long_text,
        "index": None if index is None else str(index),
    }
    _check_manifest(out_fs, out, manifest)

    cpus_needed = actors * cpus_per_actor + FILTER_CPUS + 2 * LIGHT_CPUS
    started = _connect(address, cpus_needed)
    import ray
    from ray.data.checkpoint import CheckpointConfig

    start = time.perf_counter()
    try:
        resources = ray.cluster_resources()
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if resources.get("CPU", 0) < cpus_needed:
            raise BulkError(
                f"the Ray cluster has {resources.get('CPU', 0):g} CPUs; {actors} actors x {cpus_per_actor:g} CPUs plus "
                f"{cpus_needed - actors * cpus_per_actor:g} for reading, checkpoints and writing need {cpus_needed:g}: "
                "use fewer actors or fewer CPUs per actor"
            )
        if gpus_per_actor and resources.get("GPU", 0) < actors * gpus_per_actor:
            gpus = resources.get("GPU", 0)
            raise BulkError(f"the Ray cluster has {gpus:g} GPUs: {actors} actors x {gpus_per_actor:g} do not fit")
        dataset = ray.data.read_datasource(PatentFiles(files, in_fs, read_fields), num_cpus=LIGHT_CPUS)
        # Rows already written: the committed checkpoints (a cut-short write's file is removed below).
        checkpoints = _join(out, CHECKPOINT_DIR)
        before = _parquet_rows(out_fs, checkpoints, skip_suffix=".pending.parquet")
        options = {
            "batch_size": batch_size,
            "long_text": long_text,
            "precision": precision,
            "compile": compile,
            "device": None if gpus_per_actor else "cpu",  # a CPU actor on a GPU node stays off the GPU
            "index": index if isinstance(index, bool) or index is None else str(index),
        }
        if job == "index":
            options.update(text_fields=fields, codes_column=codes_column, index=False)
        threads = None if gpus_per_actor else max(1, int(cpus_per_actor))
        predictions = dataset.map_batches(
            worker,
            fn_constructor_args=(str(model_path), fields, input, options, threads),
            batch_size=rows_per_batch,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor,
            udf_modifying_row_count=False,
        )
        # Kept after success, so that rerunning a finished job writes nothing.
        checkpointing = CheckpointConfig(
            id_column="id", checkpoint_path=checkpoints, override_filesystem=out_fs, delete_checkpoint_on_success=False
        )
        checkpointing.checkpoint_actor_pool_min_size = checkpointing.checkpoint_actor_pool_max_size = 1
        predictions.context.checkpoint_config = checkpointing
        # A bad row's DataError reaches us as itself (Ray Data would wrap it in a UserCodeException
        # that keeps only its traceback's text), so that _user_error finds it.
        predictions.context.raise_original_map_exception = True
        predictions.write_parquet(out, filesystem=out_fs, ray_remote_args={"num_cpus": LIGHT_CPUS})
    except Exception as exc:
        cause = _user_error(exc)
        if cause is not None:
            raise BulkError(str(cause)) from None
        raise
    finally:
        if started:
            ray.shutdown()
    total = _parquet_rows(out_fs, out)
    return BulkResult(output=output, written=total - before, total=total, seconds=time.perf_counter() - start)
