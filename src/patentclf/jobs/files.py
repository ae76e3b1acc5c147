"""Where a job's files are, and which job an output folder belongs to: shared by every job, on this
machine or on Ray. No Ray here: the local engines use it without the ``ray`` extra.

Paths are local paths or pyarrow URIs (``s3://...``); an input is a file, a folder (read
recursively, names starting with ``_`` or ``.`` skipped, as pyarrow does) or a glob. An output folder
holds a manifest (a JSON file) saying what wrote it, so that a rerun of the same job continues it and
another job is refused.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from patentclf.corpus.inputs import FORMATS, DataError

MANIFEST = "_patentclf.json"  # a leading "_": pandas / pyarrow readers of the folder skip it
# Manifests written before jobs had names were bulk predictions' (the only job then).
UNNAMED = {"job": "predict"}


class JobError(ValueError):
    """A job cannot start or stopped on bad input; the message says why."""


def absolute(spec: str) -> str:
    """A URI as it is, a local path made absolute: how a manifest names an input."""
    return spec if "://" in spec else os.path.abspath(os.path.expanduser(spec))


def filesystem(spec: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path on it: ``s3://...`` and other URIs, or a local path."""
    if "://" in spec:
        try:
            return pafs.FileSystem.from_uri(spec)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise DataError(f"{spec}: {exc}") from None
    return pafs.LocalFileSystem(), absolute(spec)


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _glob(fs: pafs.FileSystem, path: str) -> list[str]:
    parts = path.split("/")
    first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    base = "/".join(parts[:first]) or "/"
    recursive = "**" in path or first < len(parts) - 1  # only a pattern in a folder's name needs the tree
    selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
    return [f.path for f in fs.get_file_info(selector) if f.type == pafs.FileType.File and fnmatch.fnmatchcase(f.path, path)]


def list_input_files(spec: str) -> tuple[pafs.FileSystem, list[str]]:
    """The JSONL / CSV / Parquet files named by a file, a folder or a glob such as ``data/*.jsonl``,
    sorted; a spec that names none is a DataError."""
    fs, path = filesystem(spec)
    try:
        kind = None if any(ch in path for ch in "*?[") else fs.get_file_info(path).type
        if kind is None:
            found = _glob(fs, path)
            if not found:
                raise DataError(f"{spec}: no file matches")
        elif kind == pafs.FileType.Directory:
            found = [
                f.path
                for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                if f.type == pafs.FileType.File
                and not any(part.startswith(("_", ".")) for part in f.path[len(path) :].split("/"))
            ]
        elif kind == pafs.FileType.File:
            found = [path]
        else:
            raise DataError(f"{spec}: no such file or folder")
    except OSError as exc:  # unreachable storage, no permission
        raise DataError(f"{spec}: {exc}") from None
    unsupported = sorted({Path(f).suffix or Path(f).name for f in found if Path(f).suffix.lower() not in FORMATS})
    files = sorted(f for f in found if Path(f).suffix.lower() in FORMATS)
    if not files:
        extra = f" (found {', '.join(unsupported)})" if unsupported else ""
        raise DataError(f"{spec}: no {', '.join(FORMATS)} files{extra}")
    return fs, files


def _holds_parquet(fs: pafs.FileSystem, folder: str) -> bool:
    """Any Parquet file under ``folder``, its subfolders included (a Ray job's checkpoints)."""
    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    return any(info.base_name.endswith(".parquet") for info in fs.get_file_info(selector))


def check_manifest(
    fs: pafs.FileSystem, folder: str, manifest: dict, labels: dict[str, str], *, what: str, name: str = MANIFEST
) -> None:
    """A folder holds one job's ``what``: a rerun of the same job continues it, and a run that differs in
    a key of ``labels`` (``{key: its name in the error}``) is refused; a folder of someone else's Parquet
    files is refused too. A folder with a manifest but nothing written yet is taken over. Writes
    ``manifest`` to ``folder/name`` for a new job."""
    kind = fs.get_file_info(folder).type
    if kind == pafs.FileType.File:
        raise JobError(f"{folder} is a file; --output names a folder for the Parquet files")
    path = join(folder, name)
    written = kind == pafs.FileType.Directory and _holds_parquet(fs, folder)
    if written and fs.get_file_info(path).type == pafs.FileType.File:
        with fs.open_input_stream(path) as f:
            before = json.loads(f.read())
        old = {key: before.get(key, UNNAMED.get(key)) for key in labels}
        changed = [f"{label} {old[key]!r} -> {manifest[key]!r}" for key, label in labels.items() if old[key] != manifest[key]]
        if changed:
            held = what if old.get("job") == manifest.get("job") else "output"  # another kind of job's: not ours
            raise JobError(
                f"{folder} holds another job's {held} ({'; '.join(changed)}): write to a new folder, "
                "or delete this one to start over"
            )
        return
    if written:
        raise JobError(f"{folder} already holds Parquet files that no patentclf bulk run wrote; write to a new folder")
    fs.create_dir(folder, recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(manifest, indent=2).encode() + b"\n")
