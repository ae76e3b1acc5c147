"""Data specs -> splits of (text, label).

A data spec is one of:

* ``bundled`` - the USPTO abstracts shipped inside the package (see ``resources/uspto-abstracts``);
* a local file (JSONL, CSV or Parquet) or a folder holding ``train`` / ``validation`` / ``test`` files;
* a Hugging Face hub dataset name such as ``ccdv/patent-classification`` (with a config name).

Text comes from ``text`` or from ``title`` + ``abstract``; the label from ``label`` (0..8, ccdv order)
or ``section`` (a letter). Files are read by :mod:`patentclf.corpus.inputs`, by the rules that every reader
of patents follows. Bad rows stop loading with a :class:`DataError` naming file, row and problem.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from patentclf.corpus.hierarchy import parse_code_list, parse_group_list
from patentclf.corpus.inputs import SUFFIXES, DataError, clean, read_local_records, row_id, row_text, text_fields_for
from patentclf.corpus.labels import CODES, parse_label

SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}


# Columns that may hold a row's classification codes (main code first, ";"-separated): ``ipc``, as
# in the USPTO data and in ``patentclf feedback export``'s rows, or ``codes`` as another name for it.
CODE_FIELDS = ("ipc", "codes")


@dataclass
class Split:
    texts: list[str]
    labels: list[int] | None  # None when the rows carry no labels (prediction input)
    ids: list[str | None] = field(default_factory=list)
    source: str = ""
    # Each row's classification codes down to the subclass, main code first (from an ``ipc`` column,
    # see ``hierarchy``); ``[]`` for a row without readable codes, which keeps its section label only.
    codes: list[list[str]] = field(default_factory=list)
    # The same codes' main groups (``G06F 3/00``), main code's first; ``[]`` where none has a group.
    groups: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [None] * len(self.texts)
        if not self.codes:
            self.codes = [[] for _ in self.texts]
        if not self.groups:
            self.groups = [[] for _ in self.texts]

    @property
    def has_codes(self) -> bool:
        return any(self.codes)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> "Split":
        return Split(
            texts=[self.texts[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            ids=[self.ids[i] for i in indices],
            source=self.source,
            codes=[self.codes[i] for i in indices],
            groups=[self.groups[i] for i in indices],
        )

    def label_counts(self) -> dict[str, int]:
        counts = Counter(self.labels or [])
        return {code: counts.get(i, 0) for i, code in enumerate(CODES)}


def bundled_data_dir() -> Path:
    return Path(str(resources.files("patentclf") / "resources" / "uspto-abstracts"))


# --- text forms --------------------------------------------------------------------------------

_PUNCT = re.compile(r"(?<!\d)[.,](?!\d)|(?<=\d)[.,](?!\d)|(?<!\d)[.,](?=\d)|[^\w\s.,]")


def to_bigpatent_form(text: str) -> str:
    """Lowercase and space-separate punctuation, the way BIGPATENT stores patent text.

    ``"Primary-treated sewage (10.5%)."`` -> ``"primary - treated sewage ( 10.5 % ) ."``.
    Idempotent, so it also serves as the classifier's input normalisation: mixed-case abstracts and
    BIGPATENT's lowercased, tokenized text reach the model in the same form.
    """
    spaced = _PUNCT.sub(lambda m: f" {m.group(0)} ", text.lower())
    return " ".join(spaced.split())


# --- reading files -----------------------------------------------------------------------------


def _label_field_for(columns: set[str], label_field: str | None, where: str) -> str:
    if label_field:
        if label_field not in columns:
            raise DataError(f"{where}: missing label column {label_field!r}; columns are {sorted(columns)}")
        return label_field
    for name in ("label", "section"):
        if name in columns:
            return name
    raise DataError(f"{where}: no label column: expected 'label' (0..8) or 'section' (A..Y); columns are {sorted(columns)}")


def rows_to_split(
    records: list[dict],
    where: str,
    *,
    text_fields: tuple[str, ...] | None = None,
    label_field: str | None = None,
    require_labels: bool = True,
) -> Split:
    """Validate raw records and turn them into a :class:`Split`."""
    if not records:
        raise DataError(f"{where}: no rows")
    columns = set().union(*(r.keys() for r in records))
    fields = text_fields_for(columns, text_fields, where)
    label_name = _label_field_for(columns, label_field, where) if require_labels else None
    texts, labels, ids, codes, groups = [], [], [], [], []
    code_field = next((name for name in CODE_FIELDS if name in columns), None)
    for number, record in enumerate(records, start=1):
        text = row_text(record, fields)
        if not text:
            raise DataError(f"{where}: row {number}: empty text in {'+'.join(fields)}")
        texts.append(text)
        ids.append(row_id(record.get("id")))
        codes.append(parse_code_list(clean(record.get(code_field))) if code_field else [])
        groups.append(parse_group_list(clean(record.get(code_field))) if code_field else [])
        if label_name:
            raw = record.get(label_name)
            try:
                labels.append(parse_label(raw))
            except ValueError as exc:
                raise DataError(f"{where}: row {number}: {exc}") from None
    return Split(texts=texts, labels=labels if label_name else None, ids=ids, source=where, codes=codes, groups=groups)


def read_file(path: str | Path, **options) -> Split:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return rows_to_split(read_local_records(path), str(path), **options)


# --- data specs --------------------------------------------------------------------------------


def _split_file(folder: Path, split: str) -> Path | None:
    for name in SPLIT_ALIASES.get(split, (split,)):
        for suffix in SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _is_hub_name(spec: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", spec)) and not Path(spec).exists()


def has_split(spec: str, split: str) -> bool:
    """Whether ``spec`` has its own ``split`` (a single file only has ``train``)."""
    if spec == "bundled":
        return _split_file(bundled_data_dir(), split) is not None
    path = Path(spec)
    if path.is_dir():
        return _split_file(path, split) is not None
    if path.is_file():
        return split == "train"
    return _is_hub_name(spec)


def load_split(
    spec: str,
    split: str = "train",
    *,
    data_config: str = "abstract",
    text_fields: tuple[str, ...] | None = None,
    label_field: str | None = None,
    require_labels: bool = True,
) -> Split:
    """Load one split of a data spec. A single file stands for every split."""
    options = dict(text_fields=text_fields, label_field=label_field, require_labels=require_labels)
    if spec == "bundled":
        rows = load_split(str(bundled_data_dir()), split, **options)
        rows.source = f"bundled:{split}"  # the same on every machine, unlike the install path
        return rows
    path = Path(spec)
    if path.is_dir():
        found = _split_file(path, split)
        if found is None:
            raise DataError(
                f"{path}: no {split} file (looked for {'/'.join(SPLIT_ALIASES.get(split, (split,)))} with {', '.join(SUFFIXES)})"
            )
        return read_file(found, **options)
    if path.is_file():
        return read_file(path, **options)
    if _is_hub_name(spec):
        return _load_hub_split(spec, split, data_config, options)
    raise DataError(f"{spec}: no such file or folder, and not a hub dataset name")


def _load_hub_split(name: str, split: str, data_config: str, options: dict) -> Split:
    import datasets

    try:
        dataset = datasets.load_dataset(name, data_config, split=split)
    except Exception as exc:  # network, auth, unknown config: all surface as one readable error
        raise DataError(f"{name} ({data_config}, {split}): cannot load from the Hugging Face hub: {exc}") from exc
    return rows_to_split(list(dataset), f"{name}:{data_config}:{split}", **options)


def stratified_indices(labels: list[int], limit: int, seed: int = 42) -> list[int]:
    """Seeded indices of ``limit`` rows keeping the label mix (largest-remainder quotas), sorted."""
    if limit <= 0:
        raise DataError(f"limit must be positive, got {limit}")
    if limit >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    exact = {label: limit * len(rows) / len(labels) for label, rows in by_label.items()}
    quota = {label: int(share) for label, share in exact.items()}
    for label in sorted(exact, key=lambda k: exact[k] - quota[k], reverse=True)[: limit - sum(quota.values())]:
        quota[label] += 1
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        chosen.extend(rows[: quota[label]])
    return sorted(chosen)


def stratified_subset(split: Split, limit: int | None, seed: int = 42) -> Split:
    """A seeded, label-stratified subset of ``limit`` rows, in input order (all rows if no limit)."""
    if limit is None or limit >= len(split):
        return split
    if split.labels is None:
        if limit <= 0:
            raise DataError(f"limit must be positive, got {limit}")
        return split.subset(sorted(random.Random(seed).sample(range(len(split)), limit)))
    return split.subset(stratified_indices(split.labels, limit, seed))


def stratified_holdout(split: Split, fraction: float = 0.1, seed: int = 42) -> tuple[Split, Split]:
    """Split off a stratified hold-out (for a single training file that has no validation split)."""
    held = set(stratified_indices(split.labels or [0] * len(split), max(1, round(len(split) * fraction)), seed))
    keep = [i for i in range(len(split)) if i not in held]
    return split.subset(keep), split.subset(sorted(held))


def concat(splits: list[Split]) -> Split:
    if any(s.labels is None for s in splits):
        raise DataError("cannot combine unlabelled data into training data")
    return Split(
        texts=[t for s in splits for t in s.texts],
        labels=[label for s in splits for label in s.labels],  # type: ignore[union-attr]
        ids=[i for s in splits for i in s.ids],
        source=" + ".join(s.source for s in splits),
        codes=[c for s in splits for c in s.codes],
        groups=[g for s in splits for g in s.groups],
    )


# --- near-duplicates across splits -------------------------------------------------------------

NEAR_DUPLICATE_JACCARD = 0.5  # share of 5-word shingles two abstracts with the same title must share


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _shingles(text: str, size: int = 5) -> set[str]:
    words = _words(text)
    return {" ".join(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def near_duplicate_pairs(rows: list[dict], threshold: float = NEAR_DUPLICATE_JACCARD) -> list[tuple[int, int]]:
    """Pairs of row indices whose titles are the same (ignoring case and punctuation) and whose
    abstracts share at least ``threshold`` of their 5-word shingles (Jaccard): the same invention
    filed twice, which must not sit on both sides of a train / test boundary."""
    by_title: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        title = " ".join(_words(str(row.get("title") or "")))
        if title:
            by_title[title].append(index)
    pairs = []
    for members in by_title.values():
        for a, first in enumerate(members):
            for second in members[a + 1 :]:
                left, right = _shingles(str(rows[first].get("abstract", ""))), _shingles(str(rows[second].get("abstract", "")))
                if len(left & right) / max(1, len(left | right)) >= threshold:
                    pairs.append((first, second))
    return pairs
