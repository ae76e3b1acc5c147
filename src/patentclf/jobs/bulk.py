"""Bulk classification on a Ray cluster: files of patents in, Parquet files of predictions out.

``run_bulk(input, output)`` is the Ray job runner (:mod:`patentclf.jobs.runner`: reading, resuming,
the output folder's manifest) with a :class:`Predictor` worker: each actor loads the bundle once with
:class:`Classifier` and classifies batch after batch. The Parquet files under ``output`` hold the
fields of ``patentclf predict --input``'s JSONL lines, keyed by each row's ``id``. It adds no
prediction logic: every row's fields come from ``Classifier.predict``.

An output folder belongs to one job (``_patentclf.json``: the model, the input and the options that
change a prediction); a run with another model, input or text options is refused before anything
starts, and a rerun of the same one finishes what an interrupted run left.

Needs the ``ray`` extra (``pip install 'patentclf[ray]'``): importing this module imports Ray Data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from patentclf.inference.options import PredictOptions
from patentclf.inference.prediction import OLD_LABEL_NAME, prediction_table
from patentclf.jobs.files import JobError, absolute, filesystem
from patentclf.jobs.runner import Cluster, Job, JobResult, batch_texts, plan_input, run_job

BulkError = JobError  # the names callers of run_bulk know
BulkResult = JobResult

# What must match for a rerun to continue a folder of predictions: whatever changes a row's
# prediction, and the rows (the job's name is the runner's).
JOB_KEYS = {
    "model_version": "model",
    "input": "input",
    "text_fields": "text fields",
    "long_text": "long text",
    "index": "index",
    "options": "answer options",
    "tags": "tag sets",
}


@dataclass(frozen=True)
class PredictorSettings:
    """What each :class:`Predictor` actor is told (as for ``Classifier.load`` and ``Classifier.predict``)."""

    model: str
    text_fields: tuple[str, ...]
    source: str  # the input as given, for errors
    batch_size: int | None
    long_text: str
    precision: str
    compile: bool
    index: str | bool | None
    answer: PredictOptions = PredictOptions()  # how each answer is shaped (counts, thresholds, depth)
    tags: tuple[str, ...] | None = None  # tag set folders (or folders of them): each row's tags


class Predictor:
    """One Ray actor: loads the bundle once, then classifies batch after batch."""

    def __init__(self, options: PredictorSettings, device: str | None, threads: int | None):
        import torch

        from patentclf.inference.classifier import Classifier

        if threads:
            torch.set_num_threads(threads)
        self.options = options
        self.classifier = Classifier.load(
            options.model,
            device=device,
            precision=options.precision,
            compile=options.compile,
            index=options.index,
            tags=list(options.tags) if options.tags else None,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        o = self.options
        texts = batch_texts(batch, o.text_fields, o.source)
        predictions = self.classifier.predict(texts, batch_size=o.batch_size, long_text=o.long_text, options=o.answer)
        return prediction_table(batch["id"], predictions)


def read_predictions(output: str | Path) -> pa.Table:
    """Every prediction under ``output`` as one table, one row per id (the first, should a file have
    been copied in twice)."""
    import pyarrow.dataset as pads

    fs, out = filesystem(str(output))
    table = pads.dataset(out, format="parquet", filesystem=fs).to_table()
    if OLD_LABEL_NAME in table.column_names:  # written by an older patentclf: the section is `label` now
        table = table.rename_columns(["label" if name == OLD_LABEL_NAME else name for name in table.column_names])
    ids = table["id"].to_pylist()
    if len(set(ids)) == len(ids):
        return table
    seen: set = set()
    return table.filter(pa.array([not (i in seen or seen.add(i)) for i in ids]))


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
    index: str | Path | bool | None = None,
    options: PredictOptions | None = None,
    tags: list[str | Path] | None = None,
) -> BulkResult:
    """Classify every row of ``input`` into Parquet files under ``output`` (see the module's doc).

    ``address``, ``actors``, ``rows_per_batch``, ``cpus_per_actor``, ``gpus_per_actor``: the
    :class:`~patentclf.jobs.runner.Cluster`; ``batch_size``, ``long_text``, ``precision``,
    ``compile``: as for ``Classifier``; ``index``: the patent index of the predictions' groups and
    evidence (as for ``Classifier.load``); ``options``: how each answer is shaped (``PredictOptions`` of
    ``patentclf.inference.options``; a folder's rows all have the same); ``tags``: tag set folders (as for
    ``Classifier.load``: the rows' ``tags`` column). Bad input, a wrong model or a folder of another job raise
    :class:`BulkError` (or ``ModelError``) before any cluster starts where they can."""
    from patentclf.inference.classifier import LONG_TEXT_MODES
    from patentclf.inference.tags import TagSetError, load_tag_sets
    from patentclf.model.bundle import default_model_dir, model_digest, model_version, read_info

    cluster = Cluster(
        address=address,
        actors=actors,
        rows_per_batch=rows_per_batch,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
    )
    if long_text not in LONG_TEXT_MODES:
        raise BulkError(f"long_text must be one of {LONG_TEXT_MODES}, not {long_text!r}")
    model_path = Path(model) if model else default_model_dir()
    read_info(model_path)  # a wrong --model fails here, before any cluster starts (ModelError)
    fs, files, fields = plan_input(input, text_fields)
    index = index if isinstance(index, bool) or index is None else str(index)
    answer = options or PredictOptions()
    tag_sets = tuple(absolute(str(t)) for t in tags) if tags else None
    if tag_sets:
        try:  # a missing folder or another model's set fails here, before any cluster starts
            load_tag_sets(list(tag_sets), model_digest=model_digest(model_path))
        except TagSetError as exc:
            raise BulkError(str(exc)) from None
    options = PredictorSettings(
        str(model_path), fields, input, batch_size, long_text, precision, compile, index, answer, tag_sets
    )
    manifest = {
        "model": str(model_path),
        "model_version": model_version(model_path),
        "input": absolute(input),
        "text_fields": list(fields),
        "long_text": long_text,
        "index": None if index is None else str(index),
        # Only what differs from the defaults; None for none (as in folders written before options).
        "options": answer.model_dump(exclude_defaults=True) or None,
        "tags": list(tag_sets) if tag_sets else None,  # None for none (as in folders written before tags)
    }
    job = Job("predict", Predictor, options, fields, manifest, JOB_KEYS)
    return run_job(job, fs, files, output, cluster)
