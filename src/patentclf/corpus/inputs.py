"""Files of patents, read alike everywhere: training and evaluation data, `patentclf predict --input`,
the web UI's uploads and the read tasks of the Ray bulk job.

The rules:

* ``.jsonl`` / ``.json``: one JSON object per line (blank lines skipped), or one JSON array of objects;
* ``.csv``: every cell is text (an id such as ``00123`` stays ``"00123"``, an empty cell is ``""``);
* ``.parquet``: the file's own column types;
* a row's text is its ``text``, or ``title`` + ``abstract``, or the columns asked for
  (:func:`text_fields_for`), joined by newlines (:func:`row_text`);
* ids are text (:func:`row_id`).

:func:`read_records` reads a whole file into dicts (the local path); :func:`read_rows` streams the ids
and text columns of a file as Arrow tables of strings (the bulk job). A file that cannot be used is a
:class:`DataError` naming it, and the row where there is one.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SUFFIXES = tuple(FORMATS)
CHUNK_ROWS = 4096  # rows per table the readers yield, so that a big file streams


class DataError(ValueError):
    """A data file cannot be used; the message names the file, the row and the problem."""


def file_format(path: str | Path) -> str:
    """``json``, ``csv`` or ``parquet``, from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    return FORMATS[suffix]


# --- the rows ----------------------------------------------------------------------------------


def text_fields_for(columns: set[str], text_fields: tuple[str, ...] | None, where: str) -> tuple[str, ...]:
    """The columns a row's text is read from: ``text_fields`` if given, else ``text``, else ``title`` +
    ``abstract`` (or ``abstract`` alone)."""
    if text_fields:
        missing = [f for f in text_fields if f not in columns]
        if missing:
            raise DataError(f"{where}: missing text column(s) {missing}; columns are {sorted(columns)}")
        return text_fields
    if "text" in columns:
        return ("text",)
    if "abstract" in columns:
        return ("title", "abstract") if "title" in columns else ("abstract",)
    raise DataError(f"{where}: no text column: expected 'text' or 'title' + 'abstract'; columns are {sorted(columns)}")


def clean(value: object) -> str:
    """A cell as stripped text; a missing value (None, NaN) is ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def row_text(record: dict, fields: tuple[str, ...]) -> str:
    """The text of a row: its non-empty ``fields``, stripped, one per line (``""`` when it has none)."""
    return "\n".join(part for part in (clean(record.get(f)) for f in fields) if part)


def row_id(value: object) -> str | None:
    """A row's id as text (``str(value)``); None for a missing or blank one."""
    return None if clean(value) == "" else str(value)


def as_text(value: object) -> str | None:
    """A JSON value as a text cell: ``str(value)``; None stays None."""
    return value if value is None or isinstance(value, str) else str(value)


def check_columns(columns: set[str], fields: tuple[str, ...], path: str) -> None:
    """A file of rows keyed by id (the bulk job's) needs an ``id`` column and at least one of the text
    ``fields`` (none when ``fields`` is empty: the ids alone are read)."""
    if "id" not in columns:
        raise DataError(f"{path}: no 'id' column; bulk classification keys rows by id (columns: {sorted(columns)})")
    if fields and not columns & set(fields):
        raise DataError(f"{path}: no text column {' or '.join(map(repr, fields))} (columns: {sorted(columns)})")


# --- the formats -------------------------------------------------------------------------------


def json_row(path, number: int, line: str) -> dict:
    """One JSON-lines row as a dict, or a DataError naming the file and row."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: row {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}: row {number}: expected a JSON object, got {type(row).__name__}")
    return row


def json_rows(f, path: str) -> Iterator[dict]:
    """The objects of a JSON lines file (or of one JSON array). ``f``: the file, open in binary; it is
    left open."""
    text = io.TextIOWrapper(f, encoding="utf-8")
    try:
        first = True
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            if first and line.lstrip().startswith("["):  # a plain JSON array is accepted too
                try:
                    rows = json.loads(line + text.read())
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: not valid JSON: {exc}") from None
                if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                    raise DataError(f"{path}: a JSON array must hold objects")
                yield from rows
                return
            first = False
            yield json_row(path, number, line)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
    finally:
        text.detach()  # the file stays its opener's to close


def _parquet(f, path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


def _csv_columns(data: pa.Buffer, path: str) -> list[str]:
    """The header of a CSV file (none for an empty file)."""
    try:
        return pacsv.open_csv(pa.BufferReader(data)).schema.names if data.size else []
    except pa.ArrowException as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


def _csv_tables(data: pa.Buffer, path: str, columns: list[str]) -> Iterator[pa.Table]:
    """``columns`` of a CSV file, all as text."""
    if not data.size:
        return
    convert = pacsv.ConvertOptions(
        include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=False
    )
    try:
        for batch in pacsv.open_csv(pa.BufferReader(data), convert_options=convert):
            yield pa.Table.from_batches([batch])
    except pa.ArrowException as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


def _parquet_tables(parquet: pq.ParquetFile, path: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
    try:
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


# --- whole files, every column (the local path) ---------------------------------------------------


def read_records(f, path: str) -> list[dict]:
    """Every row of a file, every column, as a dict. ``f``: the file, open in binary (a pyarrow file,
    seekable for Parquet); ``path`` names it in errors."""
    kind = file_format(path)
    if kind == "json":
        return list(json_rows(f, path))
    if kind == "csv":
        data = f.read_buffer()
        tables = _csv_tables(data, path, _csv_columns(data, path))
    else:
        tables = _parquet_tables(_parquet(f, path), path)
    return [row for table in tables for row in table.to_pylist()]


def read_local_records(path: str | Path) -> list[dict]:
    """:func:`read_records` of a file on this machine."""
    file_format(path)  # an unsupported type says so, before any read
    try:
        with pa.OSFile(str(path)) as f:
            return read_records(f, str(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


# --- ids and texts, streamed (the bulk job) -----------------------------------------------------


def _text_columns(table: pa.Table, columns: tuple[str, ...], path: str) -> pa.Table:
    """``columns`` of ``table`` as strings; a text column a file lacks is all nulls."""
    arrays = []
    for name in columns:
        if name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, pa.string()))
            continue
        column = table[name]
        if not pa.types.is_string(column.type):
            try:
                column = pc.cast(column, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(f"{path}: column {name!r} holds {column.type}, not text") from None
        arrays.append(column)
    return pa.table(arrays, names=list(columns))


def _json_table(rows: list[dict], columns: tuple[str, ...], path: str) -> pa.Table:
    check_columns(set().union(*(r.keys() for r in rows)), columns[1:], path)
    return pa.table({c: pa.array([as_text(r.get(c)) for r in rows], pa.string()) for c in columns})


def read_rows(f, path: str, fields: tuple[str, ...]) -> Iterator[pa.Table]:
    """A file's ``id`` and ``fields`` columns, all as strings, a few thousand rows at a time (each
    file needs an id and a text column: :func:`check_columns`). ``f``: the file, open (seekable for
    Parquet). With no ``fields``, only the ids are read (from Parquet, only that column)."""
    columns = ("id", *fields)
    kind = file_format(path)
    if kind == "parquet":
        parquet = _parquet(f, path)
        present = set(parquet.schema_arrow.names)
        check_columns(present, fields, path)
        for table in _parquet_tables(parquet, path, [c for c in columns if c in present]):
            yield _text_columns(table, columns, path)
    elif kind == "csv":
        data = f.read_buffer()
        present = set(_csv_columns(data, path))
        check_columns(present, fields, path)
        for table in _csv_tables(data, path, [c for c in columns if c in present]):
            yield _text_columns(table, columns, path)
    else:
        rows: list[dict] = []
        for row in json_rows(f, path):
            rows.append(row)
            if len(rows) == CHUNK_ROWS:
                yield _json_table(rows, columns, path)
                rows = []
        if rows:
            yield _json_table(rows, columns, path)


def peek_columns(fs: pafs.FileSystem, path: str) -> set[str]:
    """The columns of a file, from its head only: a Parquet footer, a CSV header, the first JSON lines."""
    kind = file_format(path)
    try:
        if kind == "parquet":
            with fs.open_input_file(path) as f:
                return set(_parquet(f, path).schema_arrow.names)
        with fs.open_input_stream(path) as f:
            if kind == "csv":
                return set(_csv_columns(pa.py_buffer(f.read(1 << 20)), path))
            columns: set[str] = set()
            rows = json_rows(f, path)
            for _, row in zip(range(100), rows):
                columns.update(row)
            rows.close()
            return columns
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
