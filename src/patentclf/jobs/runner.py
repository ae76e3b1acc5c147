"""The Ray job runner: files of rows keyed by ``id`` in, Parquet files out, resumable. It knows nothing
of what a job computes.

A :class:`Job` names its worker (an actor class), the columns it reads, its options (a frozen
dataclass handed to each actor) and what goes in its output folder's manifest. :func:`run_job`
reads the files with Ray Data, each by the rules of ``patentclf predict --input``
(:mod:`patentclf.corpus.inputs`: ids and text fields as text), hands batches of rows to a pool of
actors in ``map_batches`` (a GPU each where the cluster has GPUs) and writes the tables they return
as Parquet files under the output folder.

A rerun after an interruption finishes the rest: Ray Data's row checkpoints (``output/_checkpoint``,
ids only) record which rows are written, with a two-phase commit, so the rerun removes any file
whose write was cut short, skips the rows already written and sends only the others. No row is
written twice as long as one run writes to ``output`` at a time; ids must be unique, which is checked
before the job starts (:func:`check_unique_ids`). An output folder belongs to one job (its manifest,
see :mod:`patentclf.jobs.files`); another job, or the same one with other settings, is refused before
anything starts.

Needs the ``ray`` extra (``pip install 'patentclf[ray]'``): importing this module imports Ray Data.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

from patentclf.corpus.data import rows_to_split
from patentclf.corpus.inputs import DataError, check_columns, file_format, peek_columns, read_rows, text_fields_for
from patentclf.jobs.files import JobError, check_manifest, filesystem, join, list_input_files

CHECKPOINT_DIR = "_checkpoint"  # a leading "_": pandas / pyarrow readers of the folder skip it
# Ray counts CPUs as scheduling slots. Reading and writing are light next to the model, so their
# tasks ask for a fraction of one, and the model actors get the rest.
LIGHT_CPUS = 0.25
# On a rerun Ray Data filters the rows already written in actors of one CPU slot each (its own
# setting, not ours), one pool per read operator: the input is read as one dataset, so there is one
# pool, held at one actor (a binary search per row is plenty fast); more would take slots the model
# actors need and can stall the run.
FILTER_CPUS = 1.0
MAX_NAMED_IDS = 3  # repeated ids an error names


@dataclass(frozen=True)
class Job:
    """What the runner needs to know of a job."""

    name: str  # in the manifest: a folder one job wrote is refused to another
    # A Ray actor class: ``worker(options, device, threads)`` once per actor (device "cpu" keeps a CPU
    # actor off a GPU node's GPU; threads: torch threads on a CPU), then ``worker(batch)`` -> a table
    # keyed by ``id``, a row per row of the batch.
    worker: type
    options: Any  # a frozen dataclass, handed to each actor
    fields: tuple[str, ...]  # the columns read from each file, besides ``id``
    manifest: dict  # written to the output folder with the job's name
    labels: dict[str, str]  # the manifest's keys a rerun must match to continue the folder: {key: its name in errors}
    what: str = "predictions"  # what the output holds, for errors


@dataclass(frozen=True)
class Cluster:
    """Where and how wide a job runs."""

    address: str | None = None  # a Ray cluster to join (default: env RAY_ADDRESS, else one on this machine)
    actors: int = 2  # worker replicas
    rows_per_batch: int = 256  # rows an actor handles and Ray writes at a time
    cpus_per_actor: float = 1.0  # CPU slots of each actor (and as many torch threads on a CPU)
    gpus_per_actor: float | None = None  # default 1 where the cluster has GPUs, else 0

    def __post_init__(self):
        if self.actors < 1 or self.rows_per_batch < 1 or self.cpus_per_actor <= 0 or (self.gpus_per_actor or 0) < 0:
            raise JobError("actors, rows per batch and CPUs per actor must be positive (GPUs per actor not negative)")

    @property
    def cpus_needed(self) -> float:
        return self.actors * self.cpus_per_actor + FILTER_CPUS + 2 * LIGHT_CPUS


@dataclass
class JobResult:
    output: str
    written: int  # rows handled and written by this run
    total: int  # rows in the output now
    seconds: float


# --- the input -----------------------------------------------------------------------------------


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
    try:
        fs, files = list_input_files(spec)
        with ThreadPoolExecutor(max_workers=16) as pool:  # one small read per file; remote stores are slow
            found = list(pool.map(lambda f: peek_columns(fs, f), files))
        fields = text_fields_for(set().union(*found), tuple(text_fields) if text_fields else None, spec)
        for path, columns in zip(files, found):
            if columns:  # an empty file adds no rows
                check_columns(columns, fields, path)
    except DataError as exc:
        raise JobError(str(exc)) from None
    return fs, files, fields


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

    Rows are keyed by id: the checkpoints that let a rerun skip the rows already written, and the
    readers of the output, would each keep one row of a repeated id and drop the other without a
    word. So a repeated id refuses the job before it starts. Reads the id column of every file (for
    JSONL and CSV, the whole file: a small cost beside running a model on it)."""
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
    """The texts of a batch, built and checked the way `patentclf predict --input` builds them (for workers)."""
    ids = batch["id"]
    require_ids(ids, source)
    records = batch.select(list(fields)).to_pylist()
    try:
        return rows_to_split(records, source, text_fields=fields, require_labels=False).texts
    except DataError:
        for row_id, record in zip(ids.to_pylist(), records):  # name the row by its id, not its place in a batch
            rows_to_split([record], f"{source}: id {row_id!r}", text_fields=fields, require_labels=False)
        raise


# --- running -----------------------------------------------------------------------------------


def parquet_rows(fs: pafs.FileSystem, folder: str, skip_suffix: str | None = None) -> int:
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
            raise JobError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        return True
    # A cluster of this machine alone, for this job: every core, and at least the slots the job asks for.
    ray.init(num_cpus=max(os.cpu_count() or 1, int(cpus_needed + 0.999)), include_dashboard=False, _node_ip_address="127.0.0.1")
    return True


def _check_resources(cluster: Cluster, resources: dict) -> float:
    """The GPUs each actor gets; a cluster too small for the job is a JobError."""
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    gpus_per_actor = cluster.gpus_per_actor
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    if cpus < cluster.cpus_needed:
        actors, per_actor = cluster.actors, cluster.cpus_per_actor
        raise JobError(
            f"the Ray cluster has {cpus:g} CPUs; {actors} actors x {per_actor:g} CPUs plus "
            f"{cluster.cpus_needed - actors * per_actor:g} for reading, checkpoints and writing need {cluster.cpus_needed:g}: "
            "use fewer actors or fewer CPUs per actor"
        )
    if gpus_per_actor and gpus < cluster.actors * gpus_per_actor:
        raise JobError(f"the Ray cluster has {gpus:g} GPUs: {cluster.actors} actors x {gpus_per_actor:g} do not fit")
    return gpus_per_actor


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


def run_job(job: Job, fs: pafs.FileSystem, files: list[str], output: str, cluster: Cluster) -> JobResult:
    """Run ``job`` over ``files`` (from :func:`plan_input`) into Parquet files under ``output`` (see the
    module's doc). Repeated ids or a folder of another job raise :class:`JobError` before any cluster
    starts; so does a bad row, once a worker meets it."""
    try:
        check_unique_ids(fs, files)
        out_fs, out = filesystem(output)
    except DataError as exc:
        raise JobError(str(exc)) from None
    check_manifest(out_fs, out, {"job": job.name, **job.manifest}, {"job": "job", **job.labels}, what=job.what)

    started = _connect(cluster.address, cluster.cpus_needed)
    import ray
    from ray.data.checkpoint import CheckpointConfig

    start = time.perf_counter()
    try:
        gpus_per_actor = _check_resources(cluster, ray.cluster_resources())
        dataset = ray.data.read_datasource(PatentFiles(files, fs, job.fields), num_cpus=LIGHT_CPUS)
        # Rows already written: the committed checkpoints (a cut-short write's file is removed below).
        checkpoints = join(out, CHECKPOINT_DIR)
        before = parquet_rows(out_fs, checkpoints, skip_suffix=".pending.parquet")
        device = None if gpus_per_actor else "cpu"  # a CPU actor on a GPU node stays off the GPU
        threads = None if gpus_per_actor else max(1, int(cluster.cpus_per_actor))
        results = dataset.map_batches(
            job.worker,
            fn_constructor_args=(job.options, device, threads),
            batch_size=cluster.rows_per_batch,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cluster.actors),
            num_cpus=cluster.cpus_per_actor,
            num_gpus=gpus_per_actor,
            udf_modifying_row_count=False,
        )
        # Kept after success, so that rerunning a finished job writes nothing.
        checkpointing = CheckpointConfig(
            id_column="id", checkpoint_path=checkpoints, override_filesystem=out_fs, delete_checkpoint_on_success=False
        )
        checkpointing.checkpoint_actor_pool_min_size = checkpointing.checkpoint_actor_pool_max_size = 1
        results.context.checkpoint_config = checkpointing
        # A bad row's DataError reaches us as itself (Ray Data would wrap it in a UserCodeException
        # that keeps only its traceback's text), so that _user_error finds it.
        results.context.raise_original_map_exception = True
        results.write_parquet(out, filesystem=out_fs, ray_remote_args={"num_cpus": LIGHT_CPUS})
    except Exception as exc:
        cause = _user_error(exc)
        if cause is not None:
            raise JobError(str(cause)) from None
        raise
    finally:
        if started:
            ray.shutdown()
    total = parquet_rows(out_fs, out)
    return JobResult(output=output, written=total - before, total=total, seconds=time.perf_counter() - start)
