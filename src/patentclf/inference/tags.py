"""Tags: a user's own categories, learnt from a few examples over the model's representation (the
hidden state the heads read, the vector a patent index stores).

A tag set is one-vs-rest logistic regression: one weight vector and bias per tag over the
L2-normalised representation (the feature scaling folded into the weights), and per tag the
probability from which a patent carries it, chosen by cross-validation (``training/tags.py`` fits
it). A tag set is a folder, written without pickle:

* ``tags.safetensors``: ``weights`` (tags x dimension, float32), ``bias`` (tags), ``thresholds`` (tags);
* ``tags.json``: the format, the set's name, the tags in the tensors' order, each one's examples and
  cross-validated precision, recall and F1 at its threshold, the model it belongs to (its digest: a
  representation means nothing to another model, so a mismatch is refused), and the history of fits;
* ``examples.parquet``: the examples (id, text, tags) with their representations, so that a refit with
  more rows (``tags fit --add``) computes only the new ones.

``load_tag_sets`` reads several (each path a tag set, or a folder of tag sets) for ``Classifier(...,
tags=...)``; ``TagSets.matches`` gives each text's tags above their thresholds, most probable first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patentclf.inference.prediction import TagMatch

WEIGHTS_FILE = "tags.safetensors"
INFO_FILE = "tags.json"
EXAMPLES_FILE = "examples.parquet"
FORMAT = 1
# Fewer examples than this of a tag: fitted, but warned about (its figures rest on a handful of rows).
FEW_EXAMPLES = 5
MIN_EXAMPLES = 2  # cross-validation needs two folds with an example each


class TagSetError(ValueError):
    """A tag set that cannot be used with this model, or cannot be read; or examples that cannot be fitted."""


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def read_tag_set_info(folder: str | Path) -> dict | None:
    path = Path(folder) / INFO_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@dataclass
class TagSet:
    """``probabilities(vectors)``: each tag's probability per row; ``thresholds``: from where a row carries it."""

    name: str
    tags: list[str]
    weights: np.ndarray  # tags x dimension
    bias: np.ndarray  # tags
    thresholds: np.ndarray  # tags
    model_digest: str
    figures: dict[str, dict] = field(default_factory=dict)  # tag -> examples, precision, recall, f1
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # how it was fitted (C, folds)

    @property
    def dimension(self) -> int:
        return int(self.weights.shape[1])

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """rows x tags, each tag on its own (they need not sum to 1)."""
        if vectors.shape[1] != self.dimension:
            raise TagSetError(
                f"tag set {self.name!r} reads {self.dimension}-dimensional vectors, the model gives {vectors.shape[1]}"
            )
        logits = normalised(vectors) @ self.weights.T + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))

    def describe(self) -> dict:
        """What ``/model`` lists of the set: its tags with their examples and cross-validated figures."""
        return {
            "name": self.name,
            "model_digest": self.model_digest,
            "examples": self.settings.get("examples"),
            "tags": [
                {"name": tag, "threshold": round(float(t), 6), **self.figures.get(tag, {})}
                for tag, t in zip(self.tags, self.thresholds)
            ],
        }

    def save(self, folder: str | Path) -> Path:
        """Write the weights and the JSON into ``folder`` (the caller stages and publishes it)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "weights": np.ascontiguousarray(self.weights, np.float32),
                "bias": np.ascontiguousarray(self.bias, np.float32),
                "thresholds": np.ascontiguousarray(self.thresholds, np.float32),
            },
            str(folder / WEIGHTS_FILE),
        )
        info = {
            "format": FORMAT,
            "name": self.name,
            "model_digest": self.model_digest,
            "dimension": self.dimension,
            "tags": self.tags,
            "figures": self.figures,
            "settings": self.settings,
            "history": self.history,
        }
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, model_digest: str | None = None) -> "TagSet":
        """Read a tag set; with ``model_digest``, refuse one fitted on another model's representations."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        info = read_tag_set_info(folder)
        if info is None:
            raise TagSetError(f"{folder}: not a tag set (no {INFO_FILE}); fit one with `patentclf tags fit`")
        if info.get("format") != FORMAT:
            raise TagSetError(f"{folder}: tag set format {info.get('format')!r}, this patentclf reads format {FORMAT}")
        if model_digest and info.get("model_digest") != model_digest:
            raise TagSetError(
                f"{folder}: fitted on model {info.get('model_digest')}, not this bundle's {model_digest}: a representation "
                "only means something to its own model; fit it again with `patentclf tags fit --model ...`"
            )
        try:
            tensors = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError) as exc:  # safetensors raises its own error for a damaged file
            raise TagSetError(f"{folder}: cannot read {WEIGHTS_FILE}: {exc}") from None
        tags = list(info["tags"])
        if tensors["weights"].shape[0] != len(tags):
            raise TagSetError(f"{folder}: {tensors['weights'].shape[0]} weight rows for {len(tags)} tags")
        return cls(
            info.get("name") or folder.name,
            tags,
            tensors["weights"],
            tensors["bias"],
            tensors["thresholds"],
            info["model_digest"],
            info.get("figures") or {},
            info.get("history") or [],
            info.get("settings") or {},
        )


def tag_set_folders(path: str | Path) -> list[Path]:
    """``path`` itself if it is a tag set, else the tag sets directly inside it (sorted by name)."""
    path = Path(path)
    if (path / INFO_FILE).is_file():
        return [path]
    if not path.is_dir():
        raise TagSetError(f"{path}: no such folder (fit a tag set with `patentclf tags fit`)")
    found = sorted(child for child in path.iterdir() if (child / INFO_FILE).is_file())
    if not found:
        raise TagSetError(f"{path}: neither a tag set nor a folder of tag sets (no {INFO_FILE} in it or its folders)")
    return found


@dataclass
class TagSets:
    """Every tag set a classifier answers with."""

    sets: list[TagSet] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sets)

    def matches(self, vectors: np.ndarray, threshold: float = 0.0) -> list[list[TagMatch]]:
        """Per row, its tags (of every set) whose probability reaches their own threshold and
        ``threshold``, most probable first."""
        found: list[list[TagMatch]] = [[] for _ in range(len(vectors))]
        for tag_set in self.sets:
            probabilities = tag_set.probabilities(vectors)
            floors = np.maximum(tag_set.thresholds, threshold)
            for row, column in zip(*np.nonzero(probabilities >= floors)):
                found[row].append(TagMatch(tag_set.name, tag_set.tags[column], round(float(probabilities[row, column]), 6)))
        return [sorted(row, key=lambda m: (-m.probability, m.set, m.name)) for row in found]

    def describe(self) -> list[dict]:
        return [tag_set.describe() for tag_set in self.sets]


def load_tag_sets(paths, *, model_digest: str | None = None) -> TagSets:
    """The tag sets at ``paths`` (each a tag set or a folder of them), refused for another model; two
    sets of one name are refused (a tag is named by its set)."""
    if paths is None:
        return TagSets()
    if isinstance(paths, TagSets):
        return paths
    if isinstance(paths, (str, Path, TagSet)):
        paths = [paths]
    sets: list[TagSet] = []
    for path in paths:
        if isinstance(path, TagSet):
            sets.append(path)
        else:
            sets.extend(TagSet.load(folder, model_digest=model_digest) for folder in tag_set_folders(path))
    names = [s.name for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TagSetError(f"two tag sets are named {repeated[0]!r}: rename one (its folder, or `tags fit --name`)")
    return TagSets(sets)
