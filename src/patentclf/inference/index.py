"""A patent index: classified patents by the model's own representation of each (the hidden state its
heads read, computed in the prediction's forward pass), searched with faiss.

An index is a folder:

* ``index.faiss``: the vectors (L2-normalised, so inner product is cosine similarity), in the faiss
  index that ``factory`` names (``SQfp16``: exact search on half-size vectors; ``IVF..,PQ..`` for
  millions of patents, see the README's arithmetic);
* ``patents.jsonl``: one line per vector, in the same order: ``id``, ``title``, ``codes`` (full codes,
  main code first);
* ``index.json``: the format, the model it belongs to (a representation means nothing to another
  model, so a mismatch is refused), the factory, the count, the group voting settings and the
  history (when each batch of patents was built or added, from what, in how long).

A bundle may carry its training patents' index in ``index/``; ``patentclf index`` builds one of a
user's own corpus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patentclf.corpus.hierarchy import main_group

INDEX_FILE = "index.faiss"
PATENTS_FILE = "patents.jsonl"
INFO_FILE = "index.json"
FORMAT = 1
DEFAULT_FACTORY = "SQfp16"
BUNDLE_INDEX_DIR = "index"


class PatentIndexError(ValueError):
    """An index that cannot be used with this model, or cannot be read."""


@dataclass
class IndexedPatent:
    id: str
    title: str
    codes: list[str]  # full codes (``G06F 3/048``), main code first

    @property
    def groups(self) -> list[str]:
        """The codes' main groups, main code's first, each once."""
        return list(dict.fromkeys(filter(None, map(main_group, self.codes))))


def read_index_info(folder: str | Path) -> dict | None:
    """The ``index.json`` of the index in ``folder`` (None where there is none), without its vectors."""
    path = Path(folder) / INFO_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def check_factory(factory: str, dimension: int) -> None:
    """Refuse a faiss factory string that cannot build an index of ``dimension`` (before any embedding)."""
    import faiss

    try:
        faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise PatentIndexError(
            f"factory {factory!r} cannot index {dimension}-dimensional vectors ({lines[-1] if lines else 'faiss refused it'})"
        ) from None


@dataclass
class PatentIndex:
    """``search(vectors, k)``: the k most similar indexed patents of each row, best first."""

    faiss_index: object
    patents: list[IndexedPatent]
    model_digest: str
    factory: str = DEFAULT_FACTORY
    voting: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # {"action": built | added, "date", "input", ...}
    _groups: list[list[str]] | None = None

    @classmethod
    def build(
        cls, vectors: np.ndarray, patents: list[IndexedPatent], *, model_digest: str, factory: str = DEFAULT_FACTORY
    ) -> "PatentIndex":
        import faiss

        if len(vectors) != len(patents):
            raise ValueError(f"{len(vectors)} vectors for {len(patents)} patents")
        if len(patents) == 0:
            raise PatentIndexError("no patents to index")
        vectors = normalised(vectors)
        check_factory(factory, vectors.shape[1])
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            try:
                index.train(vectors)
            except RuntimeError as exc:  # e.g. fewer rows than an IVF index has lists
                raise PatentIndexError(
                    f"factory {factory!r} cannot be trained on {len(vectors)} patents: {str(exc).strip().splitlines()[-1]}"
                ) from None
        index.add(vectors)
        return cls(index, list(patents), model_digest, factory)

    @property
    def dimension(self) -> int:
        return int(self.faiss_index.d)

    def __len__(self) -> int:
        return len(self.patents)

    @property
    def groups(self) -> list[list[str]]:
        if self._groups is None:
            self._groups = [p.groups for p in self.patents]
        return self._groups

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows), each (len(vectors), k); rows of -1 where the index has fewer patents."""
        if vectors.shape[1] != self.dimension:
            raise PatentIndexError(f"the index holds {self.dimension}-dimensional vectors, the model gives {vectors.shape[1]}")
        return self.faiss_index.search(normalised(vectors), min(k, len(self)))

    def add(self, vectors: np.ndarray, patents: list[IndexedPatent]) -> None:
        """More patents (accepted feedback, a new batch of the backfile); a trained index keeps its training."""
        self.faiss_index.add(normalised(vectors))
        self.patents.extend(patents)
        self._groups = None

    def save(self, folder: str | Path) -> Path:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss_index, str(folder / INDEX_FILE))
        with open(folder / PATENTS_FILE, "w", encoding="utf-8") as f:
            for patent in self.patents:
                f.write(json.dumps({"id": patent.id, "title": patent.title, "codes": patent.codes}, ensure_ascii=False) + "\n")
        info = {
            "format": FORMAT,
            "model_digest": self.model_digest,
            "factory": self.factory,
            "dimension": self.dimension,
            "count": len(self),
            "voting": self.voting,
            "history": self.history,
        }
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, model_digest: str | None = None) -> "PatentIndex":
        """Read an index; with ``model_digest``, refuse one built with another model."""
        import faiss

        folder = Path(folder)
        info = read_index_info(folder)
        if info is None:
            raise PatentIndexError(f"{folder}: not a patent index (no {INFO_FILE}); build one with `patentclf index`")
        if info.get("format") != FORMAT:
            raise PatentIndexError(f"{folder}: index format {info.get('format')!r}, this patentclf reads format {FORMAT}")
        if model_digest and info.get("model_digest") != model_digest:
            raise PatentIndexError(
                f"{folder}: built with model {info.get('model_digest')}, not this bundle's {model_digest}: "
                "a representation only means something to its own model; rebuild it with `patentclf index`"
            )
        with open(folder / PATENTS_FILE, encoding="utf-8") as f:
            patents = [IndexedPatent(**json.loads(line)) for line in f if line.strip()]
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(patents):
            raise PatentIndexError(f"{folder}: {index.ntotal} vectors for {len(patents)} patents")
        return cls(
            index,
            patents,
            info["model_digest"],
            info.get("factory", DEFAULT_FACTORY),
            info.get("voting") or {},
            info.get("history") or [],
        )
