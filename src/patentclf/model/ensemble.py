"""TF-IDF + logistic regression models: the honest baseline, and the ensemble partner of the LLM.

One vectorizer + logistic regression per target (main section, main class, main subclass). In a
bundle they are stored without pickle: ``tfidf.json`` (each target's vocabulary, settings and
classes) and ``tfidf.safetensors`` (idf weights, coefficients, intercepts), so loading a bundle
never runs code from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patentclf.corpus.data import Split, to_bigpatent_form
from patentclf.corpus.hierarchy import targets

if TYPE_CHECKING:  # heads imports torch, which reading TF-IDF models does not need
    from patentclf.model.heads import HeadLayout

TFIDF_JSON = "tfidf.json"
TFIDF_WEIGHTS = "tfidf.safetensors"
NGRAMS = (1, 2)  # word 1-2 grams, sublinear tf, terms in >= 2 rows
MIN_DF = 2
# Vocabulary per target: the coefficient table is classes x terms, so the many-class targets get a
# smaller vocabulary to keep the bundle small. Subclass: 8k terms scored as well as 20k on validation
# (top-5 0.829 / 0.827 blended) at 7.9 MB instead of 19.8 (494 subclasses, float16); see RESULTS.md.
MAX_FEATURES = {"section": 60_000, "class": 20_000, "subclass": 8_000}


@dataclass
class TfidfTarget:
    vectorizer: object  # sklearn TfidfVectorizer
    model: object  # sklearn LogisticRegression


@dataclass
class TfidfModels:
    """One fitted TF-IDF + logistic regression per target (``section``, ``class``, ``subclass``)."""

    targets: dict[str, TfidfTarget]

    @property
    def models(self) -> dict[str, object]:
        return {name: t.model for name, t in self.targets.items()}

    def classes(self, target: str) -> list:
        return [c.item() if hasattr(c, "item") else c for c in self.targets[target].model.classes_]

    def predict_proba(self, texts: list[str], target: str) -> np.ndarray:
        found = self.targets[target]
        return found.model.predict_proba(found.vectorizer.transform([to_bigpatent_form(t) for t in texts]))

    def aligned(self, texts: list[str], target: str, codes: list[str]) -> np.ndarray | None:
        """``target``'s probabilities in the order of ``codes`` (section codes ``A``..``Y`` for the
        section); a code the model never saw gets ~0. ``None`` when there is no model for ``target``."""
        from patentclf.corpus.labels import CODES

        if target not in self.targets:
            return None
        probs = self.predict_proba(list(texts), target)
        aligned = np.full((len(texts), len(codes)), 1e-9)
        position = {code: i for i, code in enumerate(codes)}
        for column, known in enumerate(self.classes(target)):
            key = CODES[known] if target == "section" else known
            if key in position:
                aligned[:, position[key]] = probs[:, column]
        return aligned / aligned.sum(axis=1, keepdims=True)

    # -- storage ----------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        tensors, meta = {}, {"ngram_range": list(NGRAMS), "targets": {}}
        for name, found in self.targets.items():
            # safetensors writes raw buffers: arrays must be C-ordered (lbfgs leaves coef_ Fortran-ordered).
            # Coefficients as float16 halve the file; probabilities move by < 1e-3.
            tensors[f"{name}.idf"] = np.ascontiguousarray(found.vectorizer.idf_, dtype=np.float32)
            tensors[f"{name}.coef"] = np.ascontiguousarray(found.model.coef_, dtype=np.float16)
            tensors[f"{name}.intercept"] = np.ascontiguousarray(found.model.intercept_, dtype=np.float32)
            meta["targets"][name] = {
                "classes": self.classes(name),
                "vocabulary": {term: int(i) for term, i in found.vectorizer.vocabulary_.items()},
            }
        save_file(tensors, str(folder / TFIDF_WEIGHTS))
        (folder / TFIDF_JSON).write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path) -> "TfidfModels | None":
        """The models stored in ``folder``, or ``None`` when it has none."""
        from safetensors.numpy import load_file
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        folder = Path(folder)
        if not (folder / TFIDF_JSON).is_file():
            return None
        meta = json.loads((folder / TFIDF_JSON).read_text())
        tensors = load_file(str(folder / TFIDF_WEIGHTS))
        targets = {}
        for name, stored in meta["targets"].items():
            vectorizer = TfidfVectorizer(
                ngram_range=tuple(meta["ngram_range"]), sublinear_tf=True, vocabulary=stored["vocabulary"]
            )
            vectorizer.idf_ = tensors[f"{name}.idf"].astype(np.float64)
            model = LogisticRegression()
            model.classes_ = np.asarray(stored["classes"])
            model.coef_ = tensors[f"{name}.coef"].astype(np.float64)
            model.intercept_ = tensors[f"{name}.intercept"].astype(np.float64)
            targets[name] = TfidfTarget(vectorizer, model)
        return cls(targets)


def fit_tfidf(texts: list[str], targets: dict[str, list], *, max_features: int | None = None, C: float = 10.0) -> TfidfModels:
    """Fit a vectorizer and a logistic regression per target; rows whose target is ``None`` are
    left out of that target's model. ``max_features`` overrides the per-target vocabulary sizes."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    prepared = [to_bigpatent_form(t) for t in texts]
    fitted = {}
    for name, values in targets.items():
        rows = [i for i, v in enumerate(values) if v is not None]
        size = max_features or MAX_FEATURES.get(name, 20_000)
        vectorizer = TfidfVectorizer(ngram_range=NGRAMS, sublinear_tf=True, min_df=MIN_DF, max_features=size)
        features = vectorizer.fit_transform([prepared[i] for i in rows])
        model = LogisticRegression(C=C, max_iter=2000).fit(features, [values[i] for i in rows])
        fitted[name] = TfidfTarget(vectorizer, model)
    return TfidfModels(fitted)


def tfidf_targets(split: Split, layout: HeadLayout) -> dict[str, list]:
    """Per-row targets for the TF-IDF models: the section always, class / subclass where the row's
    main code is in the model's vocabulary."""
    found = [targets(codes) for codes in split.codes]
    out: dict[str, list] = {"section": list(split.labels)}
    if layout.hierarchical:
        classes, subclasses = set(layout.classes), set(layout.subclasses)
        out["class"] = [t.main_class if t and t.main_class in classes else None for t in found]
        out["subclass"] = [t.main_subclass if t and t.main_subclass in subclasses else None for t in found]
    return out
