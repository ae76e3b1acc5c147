"""What a prediction is: the section, its confidence, the section set and the CPC codes below it.

Two shapes: :class:`Prediction`, the object the classifier makes, and :class:`PredictionRecord`, the
one declaration of a prediction as every output writes it. :func:`prediction_record` turns the first
into the second. The API answers the record (its schema is the record's) and the web UI's downloads
hold it; the files of ``patentclf predict --input`` hold :func:`file_record`'s part of it: JSONL, CSV
or Parquet by the file's extension (:func:`write_predictions`), and the bulk job's Parquet files (their
Arrow schema, ``PREDICTION_SCHEMA``, is derived from the record). A new field is a field of both
classes, and every output has it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, get_args, get_origin, get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_serializer

from patentclf.corpus.labels import CODES
from patentclf.inference.explain import Explanation


@dataclass
class CodeSuggestion:
    """A CPC class, subclass or main group the patent may belong to."""

    # The Field()s give the API's schema (pydantic reads them); at run time this is a plain dataclass.
    code: Annotated[str, Field(description="class (G06), subclass (G06F) or main group (G06F 3/00) code", examples=["G06F"])]
    title: Annotated[str, Field(description="its English title in the CPC scheme (empty when the scheme has none)")]
    probability: Annotated[float, Field(ge=0, le=1)]


@dataclass
class SimilarPatent:
    """An indexed, classified patent near the text: evidence for the suggestions."""

    id: Annotated[str, Field(description="the patent's id in the index", examples=["US10718657"])]
    title: Annotated[str, Field(description="its title (empty when the index has none)")]
    code: Annotated[str, Field(description="its main code", examples=["G01G 21/23"])]
    codes: Annotated[list[str], Field(description="all its codes, main code first")]
    similarity: Annotated[float, Field(ge=-1, le=1, description="cosine similarity of the model's representations")]


@dataclass
class LevelAnswer:
    """The best code of one level of the hierarchy, its probability, and what such a probability has
    meant: the share of held-out answers at this level and about this probability that were right."""

    level: Annotated[str, Field(description="section, class, subclass or group", examples=["subclass"])]
    code: Annotated[str, Field(examples=["G06F"])]
    title: Annotated[str, Field(description="its English title in the CPC scheme (empty when the scheme has none)")]
    probability: Annotated[float, Field(ge=0, le=1)]
    right_share: Annotated[
        float | None,
        Field(
            ge=0,
            le=1,
            description="of the validation patents answered at this level with about this probability, the share "
            "that were right (null where the bundle has no such measurement)",
        ),
    ] = None


@dataclass
class ReviewReason:
    """Why an answer should be checked by a person."""

    reason: Annotated[str, Field(description="too_short, not_english, not_patent_like or uncertain", examples=["uncertain"])]
    message: Annotated[str, Field(description="the reason in a sentence")]


@dataclass
class TagMatch:
    """A tag of the user's own (``patentclf tags fit``) whose probability reaches its threshold."""

    set: Annotated[str, Field(description="the tag set's name", examples=["batteries"])]
    name: Annotated[str, Field(description="the tag", examples=["sodium-ion"])]
    probability: Annotated[float, Field(ge=0, le=1, description="the tag's own probability (tags need not sum to 1)")]


@dataclass
class Prediction:
    label: str  # the main section: the one the patent's first code is in
    label_id: int
    name: str
    confidence: float
    probabilities: dict[str, float]
    truncated: bool  # the text was longer than the window and only its start was read
    chunks: int = 1  # windows read (chunk mode)
    # Every section the patent is predicted to belong to (multi-label; always holds ``label``), with
    # each one's own probability. A bundle trained on section labels only answers ``[label]``.
    sections: list[str] = field(default_factory=list)
    section_probabilities: dict[str, float] = field(default_factory=dict)
    # The top main CPC classes and subclasses, best first (5, or as PredictOptions ask; empty for a section-only bundle).
    classes: list[CodeSuggestion] = field(default_factory=list)
    subclasses: list[CodeSuggestion] = field(default_factory=list)
    # The top main groups and the nearest indexed patents (5 each by default; empty without a patent index).
    groups: list[CodeSuggestion] = field(default_factory=list)
    similar: list[SimilarPatent] = field(default_factory=list)
    # The best code of each level with what its probability has meant (one distribution: a code is
    # never more probable than its parent); whether to trust the answer, and why not.
    levels: list[LevelAnswer] = field(default_factory=list)
    needs_review: bool = False
    review_reasons: list[ReviewReason] = field(default_factory=list)
    evidence_disagrees: bool = False  # most of the nearest indexed patents' votes are for another section
    # The user's own tags above their thresholds, most probable first; None (absent from every output)
    # for a classifier without tag sets, so that an answer without tags is what it always was.
    tags: list[TagMatch] | None = None
    # Which sentences made the answer (options.explain); None, and left out of to_dict, when not asked.
    explanation: Explanation | None = None

    def to_dict(self) -> dict:
        values = asdict(self)
        for name in OPTIONAL_FIELDS:
            if values[name] is None:
                del values[name]
        return values


class EverySection:
    """Marks a field that holds all nine sections: a struct in Parquet (``probabilities.G`` in SQL
    engines), where a dict of some sections is a map."""


class PredictionRecord(BaseModel):
    """A prediction as the API answers it, field by field, in order."""

    id: str = Field(..., description="prediction id (uuid hex): send it back with POST /feedback")
    label: str = Field(..., description="CPC section letter")
    name: str = Field(..., description="the section's name")
    label_id: int = Field(..., ge=0, le=8)
    confidence: float = Field(..., description="probability of the predicted section")
    probabilities: Annotated[dict[str, float], EverySection()] = Field(..., description="all nine sections, by letter")
    truncated: bool = Field(..., description="the text was longer than the model's window; only its start was read")
    chunks: int = Field(1, description="windows read: more than 1 when the service runs with long_text=chunk")
    needs_review: bool = Field(
        ..., description="the answer should be checked by a person: review_reasons says why (empty: it need not be)"
    )
    model_version: str
    sections: list[str] = Field(
        default_factory=list,
        description="every section the patent is predicted to belong to (multi-label), always including label and "
        "the sections of the best class and subclass (where the depth reaches them); a model trained on section labels "
        "only answers [label]",
        examples=[["G", "H"]],
    )
    section_probabilities: dict[str, float] = Field(
        default_factory=dict,
        description="by letter, the probability that the patent belongs to each section (each on its own: they need not sum to 1; a model trained on sections only gives its label with the confidence)",
        examples=[{"G": 0.93, "H": 0.58}],
    )
    classes: list[CodeSuggestion] = Field(
        default_factory=list,
        description="the top main CPC classes, best first: 5, or as many as options.classes asks above options.threshold "
        "(empty for a model trained on sections only, or at depth section)",
    )
    subclasses: list[CodeSuggestion] = Field(
        default_factory=list,
        description="the top main CPC subclasses, best first: 5, or as options.subclasses and options.threshold ask "
        "(empty for a model trained on sections only, or at depth section or class)",
    )
    groups: list[CodeSuggestion] = Field(
        default_factory=list,
        description="the top main groups, best first (5, or as options.groups and options.threshold ask): the subclass "
        "probability times the nearest indexed patents' votes within the subclass (empty without a patent index, or "
        "at a depth above group)",
    )
    similar: list[SimilarPatent] = Field(
        default_factory=list,
        description="the nearest indexed patents, most similar first (5, or options.similar): why the groups are suggested "
        "(empty without a patent index, or at depth section)",
    )
    levels: list[LevelAnswer] = Field(
        default_factory=list,
        description="the best section, class, subclass and main group (as far as the model and the options answer: a "
        "level switched off or left empty by the threshold has none), each with its probability and the share of "
        "held-out answers at about that probability that were right",
    )
    review_reasons: list[ReviewReason] = Field(
        default_factory=list, description="why needs_review is set: too short, not English, not patent-like, uncertain"
    )
    evidence_disagrees: bool = Field(
        False,
        description="most of the nearest indexed patents' votes are for another section than label: check them (false "
        "without an index, and at depth section, which searches none)",
    )
    tags: list[TagMatch] | None = Field(
        None,
        description="the user's own tags (tag sets from `patentclf tags fit`) whose probability reaches their threshold "
        "(and options.threshold), most probable first; absent where the service answers with no tag sets",
    )
    explanation: Explanation | None = Field(
        None,
        description="with options.explain only (left out otherwise): the text's sentences as character offsets, and "
        "for the main section, the best subclass and the best main group how much each sentence raised (positive) or "
        "lowered (negative) the probability",
    )

    @model_serializer(mode="wrap")
    def _without_unasked(self, handler):
        """Left out when not asked for: an answer without tag sets or options.explain is as it was before."""
        values = handler(self)
        for name in OPTIONAL_FIELDS:
            if values.get(name) is None:
                values.pop(name, None)
        return values


# Fields a record has only where asked for (tag sets, options.explain), after all the others; left out
# otherwise, so an answer not asked for them is as it was before they existed.
OPTIONAL_FIELDS = ("tags", "explanation")
# The fields every record has, in order (then the optional ones it was asked for).
RECORD_FIELDS = tuple(name for name in PredictionRecord.model_fields if name not in OPTIONAL_FIELDS)
# What the service adds to a prediction (the other fields are the Prediction's own).
SERVICE_FIELDS = ("id", "model_version")
# A file row holds every field but these (a file keys its rows by the input's own ``id``), then the
# optional ones the record has.
FILE_FIELDS = tuple(name for name in RECORD_FIELDS if name not in (*SERVICE_FIELDS, "name", "label_id", "chunks"))
# Files written before the section was called ``label`` in every output called it ``prediction``:
# readers of patentclf's own files accept both.
OLD_LABEL_NAME = "prediction"


def prediction_record(prediction: Prediction, **added) -> dict:
    """The record of ``prediction``: its fields (suggestions as dicts) and those ``added`` (the service
    adds ``id`` and ``model_version``, and may override ``needs_review``), in the record's order, as plain JSON values."""
    values = {**prediction.to_dict(), **added}
    return {name: values[name] for name in (*RECORD_FIELDS, *OPTIONAL_FIELDS) if name in values}


def file_record(record: dict) -> dict:
    """The part of a record that a file row holds (the optional fields where the record has them)."""
    return {name: record[name] for name in FILE_FIELDS} | {name: record[name] for name in OPTIONAL_FIELDS if name in record}


# --- files of predictions: JSONL, CSV, Parquet ---------------------------------------------------

OUTPUT_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def output_format(path: str | Path) -> str:
    """The format a predictions file is written in, from its extension; a ValueError of one line for
    any other, so that a wrong name is refused before a model loads."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: the output format follows the extension: use {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def arrow_type(annotation, metadata: list = ()) -> pa.DataType:
    """The Arrow type of a field of the prediction record, from its Python type."""
    if any(isinstance(m, EverySection) for m in metadata):
        return pa.struct([(code, pa.float64()) for code in CODES])
    if get_origin(annotation) is list:
        return pa.list_(arrow_type(*get_args(annotation)))
    if get_origin(annotation) is dict:
        return pa.map_(*(arrow_type(kind) for kind in get_args(annotation)))
    if isinstance(annotation, types.UnionType):  # X | None: a nullable X
        return arrow_type(next(kind for kind in get_args(annotation) if kind is not type(None)))
    if get_origin(annotation) is Annotated:
        return arrow_type(get_args(annotation)[0])
    if dataclasses.is_dataclass(annotation):
        return pa.struct([(name, arrow_type(kind)) for name, kind in get_type_hints(annotation).items()])
    return {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}[annotation]


# The Arrow schema of a file row (after ``id``): the nine section probabilities are a struct,
# ``section_probabilities`` (the predicted sections only) a map.
PREDICTION_SCHEMA = pa.schema(
    [
        (name, arrow_type(PredictionRecord.model_fields[name].annotation, PredictionRecord.model_fields[name].metadata))
        for name in FILE_FIELDS
    ]
)


def schema_with(names: list[str]) -> pa.Schema:
    """``PREDICTION_SCHEMA`` and the optional fields ``names`` (in ``OPTIONAL_FIELDS``' order)."""
    fields = PredictionRecord.model_fields
    return pa.schema([*PREDICTION_SCHEMA, *((name, arrow_type(fields[name].annotation)) for name in names)])


# The schema of the predictions of a classifier with tag sets (no explanations asked).
TAGGED_SCHEMA = schema_with(["tags"])


def prediction_table(ids: pa.Array | pa.ChunkedArray, predictions: list[Prediction]) -> pa.Table:
    """The file rows of ``predictions`` as an Arrow table, keyed by ``ids`` (with a column per optional
    field some prediction has: null in the rows without)."""
    rows = [file_record(prediction_record(p)) for p in predictions]
    present = [name for name in OPTIONAL_FIELDS if any(name in row for row in rows)]
    table = pa.Table.from_pylist(rows, schema=schema_with(present))
    return table.add_column(0, "id", ids)


def write_predictions(path: str | Path, ids: list[str | None], predictions: list[Prediction]) -> None:
    """``predictions`` as file rows in ``path``, in the format its extension names: JSONL lines, CSV
    (lists and dicts as JSON text in their cells) or Parquet (``PREDICTION_SCHEMA``). A row
    without an id has none in JSONL, an empty one in CSV and a null in Parquet."""
    path = Path(path)
    kind = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [({"id": i} if i is not None else {}) | file_record(prediction_record(p)) for i, p in zip(ids, predictions)]
    if kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif kind == "csv":
        with path.open("w", newline="") as f:
            present = [name for name in OPTIONAL_FIELDS if any(name in row for row in rows)]
            writer = csv.DictWriter(f, fieldnames=["id", *FILE_FIELDS, *present])
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})
    else:
        pq.write_table(prediction_table(pa.array(ids, pa.string()), predictions), path)
