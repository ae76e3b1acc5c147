"""Bulk classification on a Ray cluster: files of patents in, Parquet files of predictions out.

``run_bulk(input, output)`` reads JSONL / CSV / Parquet files with Ray Data, classifies them in
``map_batches`` over a pool of actors that each load the bundle once with :class:`Classifier` (a GPU
each where the cluster has GPUs), and writes Parquet files under ``output`` with the fields of
``patentclf predict --input``'s JSONL lines, keyed by each row's ``id``. It adds no prediction logic:
every row's fields come from ``Classifier.predict``.

A rerun after an interruption finishes the rest: Ray Data's row checkpoints (``output/_checkpoint``,
ids only) record which rows are written, with a two-phase commit, so the rerun removes any file
whose write was cut short, skips the rows already written and classifies only the others. No row is
written twice as long as ids are unique and one run writes to ``output`` at a time.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .data import DataError, _text_fields_for, rows_to_split
from .labels import CODES

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
CHECKPOINT_DIR = "_checkpoint"  # a leading "_": pandas / pyarrow readers of the folder skip it
MANIFEST = "_patentclf.json"
# Ray counts CPUs as scheduling slots. Reading, filtering and writing are light next to the model,
# so they ask for a fraction of one, and the actors get the rest.
LIGHT_CPUS = 0.25
# Ray Data's checkpoint filter (on a rerun) runs in actors of one CPU slot each; one is plenty (a
# binary search per row), and more would take the slots the model actors need.
FILTER_CPUS = 1.0

_SUGGESTION = pa.struct([("code", pa.string()), ("title", pa.string()), ("probability", pa.float64())])
# The fields of `patentclf predict --input`'s JSONL lines (after ``id``). The nine section probabilities
# are a struct (``probabilities.G`` in SQL engines); ``section_probabilities`` holds only the predicted
# sections, so it is a map.
PREDICTION_SCHEMA = pa.schema(
    [
        ("prediction", pa.string()),
        ("confidence", pa.float64()),
        ("probabilities", pa.struct([(code, pa.float64()) for code in CODES])),
        ("truncated", pa.bool_()),
        ("sections", pa.list_(pa.string())),
        ("section_probabilities", pa.map_(pa.string(), pa.float64())),
        ("classes", pa.list_(_SUGGESTION)),
        ("subclasses", pa.list_(_SUGGESTION)),
    ]
)


class BulkError(ValueError):
    """A bulk run cannot start or stopped on bad input; the message says why."""


@dataclass
class BulkResult:
    output: str
    written: int  # rows classified and written by this run
    total: int  # rows in the output now
    seconds: float


def prediction_record(prediction) -> dict:
    """One output row's prediction fields, from ``Prediction.to_dict()``."""
    fields = prediction.to_dict()
    fields["prediction"] = fields.pop("label")
    return {name: fields[name] for name in PREDICTION_SCHEMA.names}


def prediction_table(ids: pa.Array | pa.ChunkedArray, predictions: list) -> pa.Table:
    table = pa.Table.from_pylist([prediction_record(p) for p in predictions], schema=PREDICTION_SCHEMA)
    return table.add_column(0, "id", ids)


# --- where files are ---------------------------------------------------------------------------


def _filesystem(spec: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path on it: ``s3://...`` and other URIs, or a local path."""
    if "://" in spec:
        try:
            return pafs.FileSystem.from_uri(spec)
        except (pa.ArrowException, ValueError) as exc:
            raise BulkError(f"{spec}: {exc}") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(spec))


def _exists(fs: pafs.FileSystem, path: str) -> pafs.FileType:
    return fs.get_file_info(path).type


def list_input_files(spec: str) -> tuple[pafs.FileSystem, list[str]]:
    """The JSONL / CSV / Parquet files named by a file, a folder (read recursively; names starting
    with ``_`` or ``.`` are skipped, as pyarrow does) or a glob such as ``data/*.jsonl``."""
    fs, path = _filesystem(spec)
    if any(ch in path for ch in "*?["):
        parts = path.split("/")
        first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
        base = "/".join(parts[:first]) or "/"
        selector = pafs.FileSelector(base, recursive="**" in path or first < len(parts) - 1, allow_not_found=True)
        found = [f.path for f in fs.get_file_info(selector) if f.type == pafs.FileType.File and fnmatch.fnmatchcase(f.path, path)]
    elif _exists(fs, path) == pafs.FileType.Directory:
        found = [
            f.path
            for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
            if f.type == pafs.FileType.File and not any(part.startswith(("_", ".")) for part in f.path[len(path) :].split("/"))
        ]
    elif _exists(fs, path) == pafs.FileType.File:
        found = [path]
    else:
        raise BulkError(f"{spec}: no such file or folder")
    unsupported = sorted({Path(f).suffix for f in found if Path(f).suffix.lower() not in FORMATS})
    files = sorted(f for f in found if Path(f).suffix.lower() in FORMATS)
    if not files:
        extra = f" (found {', '.join(unsupported)})" if unsupported else ""
        raise BulkError(f"{spec}: no {', '.join(FORMATS)} files{extra}")
    return fs, files


# --- reading -----------------------------------------------------------------------------------


def _read(fs: pafs.FileSystem, files: list[str]):
    """One Ray dataset over every file: the formats read separately, then put together."""
    import pyarrow.csv as pacsv
    import ray.data

    by_format: dict[str, list[str]] = {}
    for f in files:
        by_format.setdefault(FORMATS[Path(f).suffix.lower()], []).append(f)
    datasets = []
    if "json" in by_format:
        datasets.append(ray.data.read_json(by_format["json"], filesystem=fs, num_cpus=LIGHT_CPUS))  # JSON lines
    if "csv" in by_format:
        # Every column as text, as `patentclf predict` reads CSV: an id such as 00123 stays "00123".
        columns: set[str] = set()
        for f in by_format["csv"]:
            with fs.open_input_stream(f) as stream:
                columns.update(pacsv.open_csv(stream).schema.names)
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=False)
        datasets.append(ray.data.read_csv(by_format["csv"], filesystem=fs, convert_options=convert, num_cpus=LIGHT_CPUS))
    if "parquet" in by_format:
        datasets.append(ray.data.read_parquet(by_format["parquet"], filesystem=fs, num_cpus=LIGHT_CPUS))
    return datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]


def batch_texts(batch: pa.Table, fields: tuple[str, ...], source: str) -> list[str]:
    """The texts of a batch, built and checked the way `patentclf predict --input` builds them."""
    ids = batch["id"]
    if ids.null_count or pc.any(pc.equal(pc.cast(ids, pa.string()), "")).as_py():
        raise DataError(f"{source}: a row has no id; bulk classification keys every row by its 'id'")
    records = batch.select(list(fields)).to_pylist()
    try:
        return rows_to_split(records, source, text_fields=fields, require_labels=False).texts
    except DataError:
        for row_id, record in zip(ids.to_pylist(), records):  # name the row by its id, not its place in a batch
            rows_to_split([record], f"{source}: id {row_id!r}", text_fields=fields, require_labels=False)
        raise


class Predictor:
    """One Ray actor: loads the bundle once, then classifies batch after batch."""

    def __init__(self, model: str | None, fields: tuple[str, ...], source: str, options: dict, threads: int | None):
        import torch

        from .classifier import Classifier

        if threads:
            torch.set_num_threads(threads)
        self.fields, self.source = fields, source
        self.batch_size, self.long_text = options["batch_size"], options["long_text"]
        self.classifier = Classifier.load(model, precision=options["precision"], compile=options["compile"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch_texts(batch, self.fields, self.source)
        predictions = self.classifier.predict(texts, batch_size=self.batch_size, long_text=self.long_text)
        return prediction_table(batch["id"], predictions)


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


def _check_manifest(fs: pafs.FileSystem, out: str, manifest: dict) -> None:
    """An output folder holds one model's predictions: a rerun with another model is refused."""
    path = _join(out, MANIFEST)
    if _exists(fs, path) == pafs.FileType.File:
        with fs.open_input_stream(path) as f:
            before = json.loads(f.read())
        if before.get("model_version") != manifest["model_version"]:
            raise BulkError(
                f"{out} holds predictions of model {before.get('model_version')} ({before.get('model')}), not of "
                f"{manifest['model_version']} ({manifest['model']}); write to a new folder"
            )
        return
    if _exists(fs, out) == pafs.FileType.Directory and any(
        info.base_name.endswith(".parquet") for info in fs.get_file_info(pafs.FileSelector(out))
    ):
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
    ids = table["id"].to_pylist()
    if len(set(ids)) == len(ids):
        return table
    seen: set = set()
    return table.filter(pa.array([not (i in seen or seen.add(i)) for i in ids]))


# --- running -----------------------------------------------------------------------------------


def _connect(address: str | None, cpus_needed: float) -> bool:
    """Join the cluster at ``address``, or start a local one on loopback; True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BulkError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        return True
    # A local cluster: every core, and at least the slots this job asks for.
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
) -> BulkResult:
    """Classify every row of ``input`` into Parquet files under ``output`` (see the module's doc).

    ``actors``: model replicas; ``rows_per_batch``: rows an actor classifies and Ray writes at a time;
    ``gpus_per_actor``: default 1 where the cluster has GPUs, else 0 (``cpus_per_actor`` CPUs each, and
    as many torch threads); ``batch_size``, ``long_text``, ``precision``, ``compile``: as for
    ``Classifier``."""
    from .bundle import default_model_dir, model_version, read_info
    from .classifier import LONG_TEXT_MODES

    if actors < 1 or rows_per_batch < 1 or cpus_per_actor <= 0:
        raise BulkError("actors, rows per batch and CPUs per actor must be positive")
    if long_text not in LONG_TEXT_MODES:
        raise BulkError(f"long_text must be one of {LONG_TEXT_MODES}, not {long_text!r}")
    model_path = Path(model) if model else default_model_dir()
    read_info(model_path)  # a wrong --model fails here, before any cluster starts (ModelError)
    in_fs, files = list_input_files(input)
    out_fs, out = _filesystem(output)
    manifest = {"model": str(model_path), "model_version": model_version(model_path), "input": input}
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
        if not gpus_per_actor and resources.get("CPU", 0) < cpus_needed:
            raise BulkError(
                f"the Ray cluster has {resources.get('CPU', 0):g} CPUs; {actors} actors x {cpus_per_actor:g} CPUs plus "
                f"{cpus_needed - actors * cpus_per_actor:g} for reading, checkpoints and writing need {cpus_needed:g}: "
                "use fewer actors or fewer CPUs per actor"
            )
        if gpus_per_actor and resources.get("GPU", 0) < actors * gpus_per_actor:
            gpus = resources.get("GPU", 0)
            raise BulkError(f"the Ray cluster has {gpus:g} GPUs: {actors} actors x {gpus_per_actor:g} do not fit")
        dataset = _read(in_fs, files)
        columns = set(dataset.columns())
        if "id" not in columns:
            raise BulkError(f"{input}: no 'id' column; bulk classification keys rows by id (columns: {sorted(columns)})")
        fields = _text_fields_for(columns, tuple(text_fields) if text_fields else None, input)
        # Rows already written: the committed checkpoints (a cut-short write's file is removed below).
        checkpoints = _join(out, CHECKPOINT_DIR)
        before = _parquet_rows(out_fs, checkpoints, skip_suffix=".pending.parquet")
        options = {"batch_size": batch_size, "long_text": long_text, "precision": precision, "compile": compile}
        resources_per_actor = {"num_gpus": gpus_per_actor} if gpus_per_actor else {"num_cpus": cpus_per_actor}
        threads = None if gpus_per_actor else max(1, int(cpus_per_actor))
        predictions = dataset.map_batches(
            Predictor,
            fn_constructor_args=(str(model_path), fields, input, options, threads),
            batch_size=rows_per_batch,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **resources_per_actor,
        )
        # Kept after success, so that rerunning a finished job writes nothing.
        checkpointing = CheckpointConfig(
            id_column="id", checkpoint_path=checkpoints, override_filesystem=out_fs, delete_checkpoint_on_success=False
        )
        checkpointing.checkpoint_actor_pool_min_size = checkpointing.checkpoint_actor_pool_max_size = 1
        predictions.context.checkpoint_config = checkpointing
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
