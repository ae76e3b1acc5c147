"""TF-IDF + logistic regression models: the honest baseline, and the ensemble partner of the LLM.

One :class:`TfidfModel` per target (main section, main class, main subclass) over one shared
vocabulary. In a bundle they are stored without pickle: ``tfidf.json`` (vocabulary, settings, each
target's classes) and ``tfidf.safetensors`` (idf weights, coefficients, intercepts), so loading a
bundle never runs code from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import to_bigpatent_form

TFIDF_JSON = "tfidf.json"
TFIDF_WEIGHTS = "tfidf.safetensors"
# Settings measured on the bundled validation split: word 1-2 grams, sublinear tf, terms in >= 2 rows.
NGRAMS = (1, 2)
MIN_DF = 2
MAX_FEATURES = 60_000


@dataclass
class TfidfModels:
    """A fitted vectorizer and one linear model per target (``section``, ``class``, ``subclass``)."""

    vectorizer: object  # sklearn TfidfVectorizer
    models: dict[str, object]  # target -> sklearn LogisticRegression

    def classes(self, target: str) -> list:
        return list(self.models[target].classes_)

    def predict_proba(self, texts: list[str], target: str) -> np.ndarray:
        features = self.vectorizer.transform([to_bigpatent_form(t) for t in texts])
        return self.models[target].predict_proba(features)

    # -- storage ----------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        # safetensors writes raw buffers: arrays must be C-ordered (lbfgs leaves coef_ Fortran-ordered).
        tensors = {"idf": np.ascontiguousarray(self.vectorizer.idf_, dtype=np.float32)}
        meta = {"ngram_range": list(NGRAMS), "vocabulary": {t: int(i) for t, i in self.vectorizer.vocabulary_.items()}, "targets": {}}
        for target, model in self.models.items():
            # Coefficients as float16 halve the file; probabilities move by < 1e-3.
            tensors[f"{target}.coef"] = np.ascontiguousarray(model.coef_, dtype=np.float16)
            tensors[f"{target}.intercept"] = np.ascontiguousarray(model.intercept_, dtype=np.float32)
            meta["targets"][target] = [c.item() if hasattr(c, "item") else c for c in model.classes_]
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
        vectorizer = TfidfVectorizer(ngram_range=tuple(meta["ngram_range"]), sublinear_tf=True, vocabulary=meta["vocabulary"])
        vectorizer.idf_ = tensors["idf"].astype(np.float64)
        models = {}
        for target, classes in meta["targets"].items():
            model = LogisticRegression()
            model.classes_ = np.asarray(classes)
            model.coef_ = tensors[f"{target}.coef"].astype(np.float64)
            model.intercept_ = tensors[f"{target}.intercept"].astype(np.float64)
            models[target] = model
        return cls(vectorizer, models)


def fit_tfidf(texts: list[str], targets: dict[str, list], *, max_features: int = MAX_FEATURES, C: float = 10.0) -> TfidfModels:
    """Fit the shared vectorizer and one logistic regression per target; rows whose target is
    ``None`` are left out of that target's model."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=NGRAMS, sublinear_tf=True, min_df=MIN_DF, max_features=max_features)
    features = vectorizer.fit_transform([to_bigpatent_form(t) for t in texts])
    models = {}
    for target, values in targets.items():
        rows = [i for i, v in enumerate(values) if v is not None]
        models[target] = LogisticRegression(C=C, max_iter=2000).fit(features[rows], [values[i] for i in rows])
    return TfidfModels(vectorizer, models)
