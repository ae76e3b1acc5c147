"""Confidence that means what it says: a bundle's post-processing of the model's raw head
probabilities, fitted on the validation split and run as a walk through a few stages (``STAGES``),
each fitted on, and applied to, what the stages before it made of the tables:

1. ``HeadBlends``: each softmax head blended log-linearly with the TF-IDF partner, with a temperature;
2. ``SectionPool``: the main section pooled with the class and subclass heads summed up to sections;
3. ``SectionsThreshold``: the threshold on the multi-label head's probabilities;
4. ``SectionsStack``: every section the patent belongs to, from a logistic regression over each
   source's view of a section, and its own threshold;
5. ``ConfidenceMap``: the predicted section's probability read through what validation showed;

and then, for a model with class and subclass heads, the levels are made one distribution
(``hierarchy.top_down``: a class's probability is its section's times its share of that section, a
subclass's its class's times its share of the class), and no section's membership probability is
below its probability of being the main section. That last step has no fitted numbers.

Each stage is one class with its ``fit``, ``apply``, ``to_dict`` and ``from_dict``; together they are
a few numbers in ``patentclf.json`` (``calibration``: each head's ``llm_weight`` and temperatures, the
section's pool ``weights`` and ``confidence_map``, ``sections_threshold``, ``sections_stack``), so a
bundle's probabilities are calibrated wherever it is loaded. How well (ECE, the reliability diagram)
is measured in ``training.evaluation``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from patentclf.corpus.hierarchy import targets
from patentclf.corpus.labels import CODES
from patentclf.inference.hierarchy import top_down
from patentclf.model.heads import HeadLayout

EPS = 1e-9
HEADS = ("section", "class", "subclass")  # the softmax heads, each blended on its own


# -- the maths the stages share ---------------------------------------------------------------------


def blend(llm: np.ndarray, tfidf: np.ndarray | None, llm_weight: float, temperature: float) -> np.ndarray:
    """Log-linear blend of two probability tables, divided by a temperature, renormalised:
    ``softmax((w log p_llm + (1 - w) log p_tfidf) / T)``. Without TF-IDF (or w = 1): the LLM alone."""
    if tfidf is None or llm_weight >= 1.0:
        return combine([llm], [1.0 / temperature])
    return combine([llm, tfidf], [llm_weight / temperature, (1.0 - llm_weight) / temperature])


def combine(sources: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Log-linear pool of several probability tables over the same codes, ``softmax(sum_k w_k log p_k)``;
    the weights' sum plays the part of an inverse temperature."""
    scores = sum(w * np.log(np.clip(p, EPS, 1.0)) for w, p in zip(weights, sources))
    scores = scores - scores.max(axis=1, keepdims=True)
    out = np.exp(scores)
    return out / out.sum(axis=1, keepdims=True)


def fit_combination(sources: list[np.ndarray], labels: np.ndarray) -> list[float]:
    """The non-negative weights of :func:`combine` that minimise the validation negative
    log-likelihood (L-BFGS-B from equal weights): how much each source is trusted, and how sharp the
    result is, in one fit."""
    from scipy.optimize import minimize

    start = np.full(len(sources), 1.0 / len(sources))
    result = minimize(
        lambda w: negative_log_likelihood(combine(sources, list(w)), labels),
        start,
        method="L-BFGS-B",
        bounds=[(0.0, 5.0)] * len(sources),
    )
    return [round(float(w), 4) for w in result.x]


def to_sections(probabilities: np.ndarray, codes: list[str], sections: list[str]) -> np.ndarray:
    """A class or subclass head's probabilities summed up to sections (a code's first letter is its
    section): what the finer heads say about the section."""
    out = np.full((probabilities.shape[0], len(sections)), EPS)
    index = {code: i for i, code in enumerate(sections)}
    for column, code in enumerate(codes):
        out[:, index[code[0]]] += probabilities[:, column]
    return out / out.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))))


def fit_temperature(llm: np.ndarray, tfidf: np.ndarray | None, labels: np.ndarray, llm_weight: float) -> float:
    """The temperature that minimises the validation negative log-likelihood (a 1-D search)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(blend(llm, tfidf, llm_weight, float(np.exp(log_t))), labels),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))


def fit_blend(llm: np.ndarray, tfidf: np.ndarray | None, labels: np.ndarray) -> tuple[float, float]:
    """``(llm_weight, temperature)`` minimising validation negative log-likelihood over a grid of
    weights (a proper scoring rule: smoother than accuracy on a thousand rows)."""
    if tfidf is None:
        return 1.0, fit_temperature(llm, None, labels, 1.0)
    best = None
    for weight in np.round(np.arange(0.0, 1.0001, 0.05), 2):
        temperature = fit_temperature(llm, tfidf, labels, float(weight))
        nll = negative_log_likelihood(blend(llm, tfidf, float(weight), temperature), labels)
        if best is None or nll < best[0]:
            best = (nll, float(weight), temperature)
    return best[1], best[2]


def fit_threshold(probabilities: np.ndarray, truth: np.ndarray, main: np.ndarray) -> float:
    """The multi-label threshold with the best micro-F1 of predicted section sets on validation.
    ``probabilities`` and ``truth`` are (rows, 9); ``main`` is each row's main prediction, always
    included in the set."""
    best = (-1.0, 0.5)
    for threshold in np.round(np.arange(0.05, 0.951, 0.025), 3):
        predicted = section_sets(probabilities, main, float(threshold))
        tp = float((predicted & truth).sum())
        f1 = 2 * tp / max(1.0, float(predicted.sum() + truth.sum()))
        if f1 > best[0]:
            best = (f1, float(threshold))
    return best[1]


def section_sets(probabilities: np.ndarray, main: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean (rows, 9): sections at or above ``threshold``, plus each row's main prediction."""
    chosen = probabilities >= threshold
    chosen[np.arange(len(main)), main] = True
    return chosen


# -- what the stages are fitted against, and what they pass along -------------------------------------


@dataclass
class Truth:
    """What calibration is fitted against, one entry per validation row: the main section id, the
    index of the main class / subclass in the model's vocabulary (None: unknown), and the set of the
    patent's sections (None: the row has no codes)."""

    section: np.ndarray
    classes: list[int | None]
    subclasses: list[int | None]
    sections: list[frozenset[str] | None]

    @classmethod
    def from_split(cls, labels: list[int], codes: list[list[str]], layout: HeadLayout) -> "Truth":
        found = [targets(row) for row in codes]
        class_index = {c: i for i, c in enumerate(layout.classes)}
        subclass_index = {c: i for i, c in enumerate(layout.subclasses)}
        return cls(
            section=np.asarray(labels),
            classes=[class_index.get(t.main_class) if t else None for t in found],
            subclasses=[subclass_index.get(t.main_subclass) if t else None for t in found],
            sections=[frozenset(t.sections) if t else None for t in found],
        )

    def head(self, name: str) -> list[int | None]:
        return {"section": list(self.section), "class": self.classes, "subclass": self.subclasses}[name]


@dataclass
class Walk:
    """What the stages read and write as ``Calibration.fit`` and ``apply`` walk them: the model's raw
    head probabilities, the TF-IDF partner's (``None`` where there is none, or switched off) and the
    answer's tables so far (``out``: each head, and ``sections_threshold``, one per row)."""

    raw: dict[str, np.ndarray]
    tfidf: dict[str, np.ndarray | None]
    layout: HeadLayout
    out: dict[str, np.ndarray]
    # The section was made without the TF-IDF partner it was fitted with (switched off): the confidence
    # map, fitted on the full path's output, then leaves it alone.
    partial: bool = False

    @classmethod
    def start(cls, raw: dict[str, np.ndarray], tfidf: dict[str, np.ndarray | None], layout: HeadLayout) -> "Walk":
        """Before any stage: the raw tables, and the multi-label head at an even threshold."""
        out = dict(raw)
        if "sections" in raw:
            out["sections_threshold"] = np.full(len(raw["section"]), 0.5)
        return cls(raw, tfidf, layout, out)


class Stage(ABC):
    """One step of the calibration. ``fit`` learns it on validation from the walk so far (``None``:
    the stage does not apply to this model); ``apply`` takes the walk one step on; ``to_dict`` is the
    stage's part of the stored ``calibration`` block and ``from_dict`` finds it there (``None``: not
    stored)."""

    @classmethod
    @abstractmethod
    def fit(cls, walk: Walk, truth: Truth) -> "Stage | None": ...

    @abstractmethod
    def apply(self, walk: Walk) -> None: ...

    @abstractmethod
    def to_dict(self) -> dict: ...

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict) -> "Stage | None": ...

    def tfidf_heads(self) -> set[str]:
        """The heads whose TF-IDF probabilities ``apply`` reads (the others are not worth computing)."""
        return set()


# -- 1. each softmax head blended with its TF-IDF partner ---------------------------------------------


@dataclass
class HeadBlend:
    """A softmax head blended log-linearly with its TF-IDF partner and divided by a temperature; with
    no partner (none in the bundle, or switched off), the LLM alone with its own temperature."""

    llm_weight: float = 1.0
    temperature: float = 1.0
    llm_temperature: float = 1.0
    fitted_on: str = ""

    @classmethod
    def fit(cls, llm: np.ndarray, tfidf: np.ndarray | None, labels: np.ndarray) -> "HeadBlend":
        weight, temperature = fit_blend(llm, tfidf, labels)
        return cls(weight, temperature, fit_temperature(llm, None, labels, 1.0), f"validation ({len(labels)} rows)")

    def apply(self, llm: np.ndarray, tfidf: np.ndarray | None) -> np.ndarray:
        if tfidf is None:
            return blend(llm, None, 1.0, self.llm_temperature)
        return blend(llm, tfidf, self.llm_weight, self.temperature)


@dataclass
class HeadBlends(Stage):
    """Every softmax head through its :class:`HeadBlend`, fitted on the rows whose label the head
    knows; a head without one (not calibrated) gives its own probabilities, renormalised."""

    blends: dict[str, HeadBlend] = field(default_factory=dict)

    def get(self, head: str) -> HeadBlend:
        return self.blends.get(head, HeadBlend())

    @classmethod
    def fit(cls, walk: Walk, truth: Truth) -> "HeadBlends":
        blends = {}
        for head in HEADS:
            labels = truth.head(head)
            rows = np.array([i for i, label in enumerate(labels) if label is not None])
            if head not in walk.raw or len(rows) == 0:
                continue
            y = np.array([labels[i] for i in rows])
            partner = walk.tfidf.get(head)
            blends[head] = HeadBlend.fit(walk.raw[head][rows], None if partner is None else partner[rows], y)
        return cls(blends)

    def apply(self, walk: Walk) -> None:
        for head in HEADS:
            if head in walk.raw:
                walk.out[head] = self.get(head).apply(walk.raw[head], walk.tfidf.get(head))
        if self.get("section").llm_weight < 1.0 and walk.tfidf.get("section") is None:
            walk.partial = True

    def to_dict(self) -> dict:
        return {head: asdict(blend) for head, blend in self.blends.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "HeadBlends":
        known = {f.name for f in fields(HeadBlend)}  # a head's block also holds later stages' numbers
        return cls({head: HeadBlend(**{k: v for k, v in data[head].items() if k in known}) for head in HEADS if head in data})

    def tfidf_heads(self) -> set[str]:
        return {head for head, fitted in self.blends.items() if fitted.llm_weight < 1.0}


# -- 2. the main section pooled with the finer heads ------------------------------------------------


def section_sources(raw: dict[str, np.ndarray], tfidf: np.ndarray | None, layout: HeadLayout) -> dict[str, np.ndarray]:
    """What each part of the model says about the main section, as (rows, 9) tables: the LLM's section
    head, the TF-IDF partner's, and the LLM's class and subclass heads summed up to sections (a
    patent's main subclass names its main section, and those heads learnt it from finer labels)."""
    sources = {"llm": raw["section"]}
    if tfidf is not None:
        sources["tfidf"] = tfidf
    for head, codes in (("class", layout.classes), ("subclass", layout.subclasses)):
        if head in raw:
            sources[head] = to_sections(raw[head], codes, list(CODES))
    return sources


@dataclass
class SectionPool(Stage):
    """A hierarchical model with the TF-IDF partner: the main section as a log-linear pool of
    :func:`section_sources`, the weights fitted for NLL. Without the partner (switched off) the
    section stays the LLM's own blend."""

    weights: dict[str, float]

    def pooled(self, sources: dict[str, np.ndarray]) -> np.ndarray:
        return combine([sources[name] for name in self.weights], list(self.weights.values()))

    @classmethod
    def fit(cls, walk: Walk, truth: Truth) -> "SectionPool | None":
        partner = walk.tfidf.get("section")
        if not walk.layout.hierarchical or partner is None or len(truth.section) == 0:
            return None
        sources = section_sources(walk.raw, partner, walk.layout)
        return cls(dict(zip(sources, fit_combination(list(sources.values()), truth.section))))

    def apply(self, walk: Walk) -> None:
        partner = walk.tfidf.get("section")
        if partner is None:
            walk.partial = True
        else:
            walk.out["section"] = self.pooled(section_sources(walk.raw, partner, walk.layout))

    def to_dict(self) -> dict:
        return {"section": {"weights": dict(self.weights)}}

    @classmethod
    def from_dict(cls, data: dict) -> "SectionPool | None":
        section = data.get("section", {})
        return cls(dict(section["weights"])) if "weights" in section else None

    def tfidf_heads(self) -> set[str]:
        return {"section"}


# -- 3. and 4. every section the patent belongs to ----------------------------------------------------


def section_truth(walk: Walk, truth: Truth) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For the section-set stages: the validation rows with codes, their sections as booleans (rows,
    9) and the walk's main section on them (the answer's: the confidence map keeps the best section);
    ``None`` for a model without the multi-label head, or when no row has codes."""
    rows = np.array([i for i, found in enumerate(truth.sections) if found is not None])
    if not (walk.layout.hierarchical and "sections" in walk.raw and len(rows)):
        return None
    members = np.array([[code in truth.sections[i] for code in CODES] for i in rows])
    return rows, members, walk.out["section"].argmax(axis=1)[rows]


@dataclass
class SectionsThreshold(Stage):
    """The threshold on the multi-label head's probabilities with the best micro-F1 of section sets on
    validation (see :func:`fit_threshold`): the section sets wherever the stack cannot be read."""

    threshold: float

    @classmethod
    def fit(cls, walk: Walk, truth: Truth) -> "SectionsThreshold | None":
        found = section_truth(walk, truth)
        if found is None:
            return None
        rows, members, main = found
        return cls(fit_threshold(walk.raw["sections"][rows], members, main))

    def apply(self, walk: Walk) -> None:
        if "sections" in walk.raw:
            walk.out["sections_threshold"] = np.full(len(walk.raw["section"]), self.threshold)

    def to_dict(self) -> dict:
        return {"sections_threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict) -> "SectionsThreshold | None":
        return None if data.get("sections_threshold") is None else cls(data["sections_threshold"])


# What the sections stacker reads per (patent, section), each as a logit: the LLM's multi-label head,
# the pooled main-section probability, and the class / subclass heads of the LLM and of TF-IDF summed
# up to sections.
STACK_FEATURES = ("sections", "section", "class", "subclass", "tfidf", "tfidf_class", "tfidf_subclass")
TFIDF_FEATURES = {"tfidf": "section", "tfidf_class": "class", "tfidf_subclass": "subclass"}  # feature: its TF-IDF head


def stack_features(tables: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """(rows x 9, len(names)) logits of the named (rows, 9) tables, one row per (patent, section)."""
    columns = []
    for name in names:
        p = np.clip(tables[name], 1e-6, 1 - 1e-6)
        columns.append(np.log(p / (1 - p)).reshape(-1))
    return np.stack(columns, axis=1)


def stack_tables(
    raw: dict[str, np.ndarray], pooled_section: np.ndarray, tfidf: dict[str, np.ndarray | None], layout: HeadLayout
) -> dict[str, np.ndarray]:
    """The (rows, 9) tables the sections stack reads (see ``STACK_FEATURES``); ``pooled_section`` is the
    pooled section before the confidence map. A table whose source is missing is left out."""
    sources = section_sources(raw, tfidf.get("section"), layout)  # its "tfidf", "class", "subclass"
    tables = {"sections": raw["sections"], "section": pooled_section}
    tables.update({name: table for name, table in sources.items() if name != "llm"})
    for head, codes in (("class", layout.classes), ("subclass", layout.subclasses)):
        if tfidf.get(head) is not None:
            tables[f"tfidf_{head}"] = to_sections(tfidf[head], codes, list(CODES))
    return tables


@dataclass
class SectionsStack(Stage):
    """A model with the TF-IDF partner: whether a patent belongs to a section, as one logistic
    regression over every source's view of that section (shared across sections), and the threshold
    on its probabilities with the best micro-F1. Probed on the shipped model by 5-fold
    cross-validation on validation: micro-F1 0.816 against 0.807 for the multi-label head alone.
    It reads the pooled section as it is before the confidence map; where a feature is missing
    (TF-IDF switched off), the multi-label head and its own threshold stay."""

    features: list[str]
    coefficients: list[float]
    intercept: float
    threshold: float
    fitted_on: str = ""

    @classmethod
    def learn(cls, tables: dict[str, np.ndarray], truth: np.ndarray, main: np.ndarray) -> "SectionsStack":
        """Fitted on (rows, 9) ``tables``, the rows' sections ``truth`` and main predictions ``main``."""
        from sklearn.linear_model import LogisticRegression

        names = [name for name in STACK_FEATURES if name in tables]
        model = LogisticRegression(C=1.0, max_iter=2000).fit(stack_features(tables, names), truth.reshape(-1))
        coefficients = np.round(model.coef_[0], 6).tolist()
        stack = cls(names, coefficients, round(float(model.intercept_[0]), 6), 0.5, f"validation ({len(truth)} rows)")
        stack.threshold = fit_threshold(stack.probabilities(tables), truth, main)
        return stack

    def probabilities(self, tables: dict[str, np.ndarray]) -> np.ndarray:
        """(rows, 9) probabilities that each patent belongs to each section."""
        rows = next(iter(tables.values())).shape[0]
        scores = stack_features(tables, self.features) @ np.array(self.coefficients) + self.intercept
        return (1.0 / (1.0 + np.exp(-scores))).reshape(rows, -1)

    @classmethod
    def fit(cls, walk: Walk, truth: Truth) -> "SectionsStack | None":
        found = section_truth(walk, truth)
        if found is None or walk.tfidf.get("section") is None:  # only a model with the partner gets a stack
            return None
        rows, members, main = found
        tables = stack_tables(walk.raw, walk.out["section"], walk.tfidf, walk.layout)
        return cls.learn({name: table[rows] for name, table in tables.items()}, members, main)

    def apply(self, walk: Walk) -> None:
        if "sections" not in walk.raw:
            return
        tables = stack_tables(walk.raw, walk.out["section"], walk.tfidf, walk.layout)
        if all(name in tables for name in self.features):
            walk.out["sections"] = self.probabilities(tables)
            walk.out["sections_threshold"] = np.full(len(walk.raw["section"]), self.threshold)

    def to_dict(self) -> dict:
        return {"sections_stack": asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SectionsStack | None":
        return cls(**data["sections_stack"]) if "sections_stack" in data else None

    def tfidf_heads(self) -> set[str]:
        return {TFIDF_FEATURES[name] for name in self.features if name in TFIDF_FEATURES}


# -- 5. the predicted section's probability read through what validation showed ----------------------

# Chosen by 5-fold cross-validation on validation (10 repeats; shipped model): 8 bins gave ECE 0.023,
# 10 / 15 / 20 bins 0.028 / 0.031 / 0.032, no map 0.048 (centred isotonic regression: 0.026-0.031).
CONFIDENCE_MAP_BINS = 8
TIE_MARGIN = 1e-6
# The map is flat where isotonic regression pooled groups (shipped: 0.60-0.72 all read 0.659), which
# would tie a quarter of the rows; this share of the raw confidence keeps them in order (a user sorting
# by confidence to review the least sure first). CV ECE on validation: 0.028 without, 0.028 with.
ORDER_MIX = 0.02


@dataclass
class ConfidenceMap(Stage):
    """Top-label recalibration: the predicted section's probability against how often such predictions
    were right on validation. Log-linear pooling fitted for NLL leaves the top confidence too high
    near 1 and too low in the middle; this bends it back without changing any prediction. It was
    fitted on the full path's output, so it leaves a section made without the TF-IDF partner alone."""

    confidence: list[float]
    accuracy: list[float]

    @classmethod
    def learn(cls, probabilities: np.ndarray, labels: np.ndarray, bins: int = CONFIDENCE_MAP_BINS) -> "ConfidenceMap":
        """Rows are sorted by confidence into ``bins`` equal-count groups; each group gives (mean
        confidence, accuracy), made non-decreasing (isotonic regression); beyond the outer groups the
        map is flat (no guess at (1, 1): the most confident group may well be wrong one time in ten)."""
        from sklearn.isotonic import IsotonicRegression

        confidence = probabilities.max(axis=1)
        correct = (probabilities.argmax(axis=1) == labels).astype(float)
        groups = np.array_split(np.argsort(confidence, kind="stable"), min(bins, len(confidence)))
        x = np.array([confidence[g].mean() for g in groups])
        # Each group's accuracy with one success and one failure added (Laplace): a group that was always
        # right on a few hundred rows does not make the model claim certainty.
        accuracy = [(correct[g].sum() + 1.0) / (len(g) + 2.0) for g in groups]
        y = IsotonicRegression(y_min=0.0, y_max=1.0).fit(x, accuracy).predict(x)
        return cls(np.round(x, 6).tolist(), np.round(y, 6).tolist())

    def read(self, probabilities: np.ndarray) -> np.ndarray:
        """Each row's top probability read through the map (linear between its points, mixed with
        ``ORDER_MIX`` of itself so that a higher confidence stays higher); the other sections share the
        rest in their old proportions, none above the top (the excess is spread over the others), so the
        row still sums to 1 and its best section stays best."""
        out = probabilities.astype(float, copy=True)
        rows, width = np.arange(len(out)), out.shape[1]
        best = out.argmax(axis=1)
        raw_top = out[rows, best]
        mapped = np.interp(raw_top, self.confidence, self.accuracy)
        top = (1.0 - ORDER_MIX) * mapped + ORDER_MIX * raw_top
        top = np.maximum(top, 1.0 / width + TIE_MARGIN)  # the best of ``width`` sections holds over 1/width
        cap = (top - TIE_MARGIN)[:, None]  # strictly below the top: a tie would let argmax pick another
        others = out.copy()
        others[rows, best] = 0.0
        # The rest keeps its proportions; where it underflowed to nothing (a top of 1.0), it is shared evenly.
        total = others.sum(axis=1, keepdims=True)
        even = np.full_like(others, 1.0 / max(width - 1, 1))
        even[rows, best] = 0.0
        others = np.where(total > 0, others / np.where(total > 0, total, 1.0), even) * (1.0 - top)[:, None]
        for _ in range(width):  # water-filling: cap the others, hand the excess to the uncapped in proportion
            excess = np.clip(others - cap, 0.0, None).sum(axis=1)
            if not (excess > 1e-12).any():
                break
            others = np.minimum(others, cap)
            room = np.where(others < cap - 1e-12, others, 0.0)
            others += room * (excess / np.maximum(room.sum(axis=1), EPS))[:, None]
        others[rows, best] = top
        return others

    @classmethod
    def fit(cls, walk: Walk, truth: Truth) -> "ConfidenceMap | None":
        if "section" not in walk.out or len(truth.section) == 0:
            return None
        return cls.learn(walk.out["section"], truth.section)

    def apply(self, walk: Walk) -> None:
        if not walk.partial:
            walk.out["section"] = self.read(walk.out["section"])

    def to_dict(self) -> dict:
        return {"section": {"confidence_map": asdict(self)}}

    @classmethod
    def from_dict(cls, data: dict) -> "ConfidenceMap | None":
        section = data.get("section", {})
        return cls(**section["confidence_map"]) if "confidence_map" in section else None


def coherent(out: dict[str, np.ndarray], layout: HeadLayout) -> None:
    """The answer's tables made to agree (in place): classes and subclasses below their parents by the
    chain rule, and each section's membership at least its probability of being the main section (a
    patent whose main section is A belongs to A)."""
    out["class"], out["subclass"] = top_down(
        out["section"], out.get("class"), layout.classes, out.get("subclass"), layout.subclasses
    )
    if out["class"] is None:
        del out["class"]
    if out["subclass"] is None:
        del out["subclass"]
    if "sections" in out:
        out["sections"] = np.maximum(out["sections"], out["section"])


# -- the fitted post-processing, as one object ------------------------------------------------------

# The stages in the order they run, each by its attribute of ``Calibration``: a new stage is a class
# above, an attribute and a line here.
STAGES: tuple[tuple[str, type[Stage]], ...] = (
    ("heads", HeadBlends),
    ("pool", SectionPool),
    ("sections_threshold", SectionsThreshold),
    ("stack", SectionsStack),
    ("confidence_map", ConfidenceMap),
)


@dataclass
class Calibration:
    """A bundle's fitted post-processing: ``apply(raw, tfidf)`` maps each head's raw probabilities
    (rows x codes) and the TF-IDF partner's (``None`` where there is none) to the answer's tables;
    ``fit`` learns it on validation; ``to_dict`` / ``from_dict`` are its form in ``patentclf.json``.
    A stage this model has no use for is ``None``; an empty Calibration passes the model's own
    probabilities through."""

    layout: HeadLayout = field(default_factory=HeadLayout)
    heads: HeadBlends = field(default_factory=HeadBlends)
    pool: SectionPool | None = None
    sections_threshold: SectionsThreshold | None = None
    stack: SectionsStack | None = None
    confidence_map: ConfidenceMap | None = None

    def stages(self) -> list[Stage]:
        """The stages this calibration has, in the order they run."""
        return [stage for stage in (getattr(self, name) for name, _ in STAGES) if stage is not None]

    def tfidf_heads(self) -> set[str]:
        """The heads whose TF-IDF probabilities ``apply`` reads (the others are not worth computing)."""
        return set().union(*(stage.tfidf_heads() for stage in self.stages()))

    def apply(self, raw: dict[str, np.ndarray], tfidf: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """The answer's tables: each softmax head, ``sections`` (with ``sections_threshold``, one per row)."""
        used = self.tfidf_heads()
        walk = Walk.start(raw, {head: tfidf.get(head) if head in used else None for head in HEADS}, self.layout)
        for stage in self.stages():
            stage.apply(walk)
        if self.layout.hierarchical:
            coherent(walk.out, self.layout)
        return walk.out

    @classmethod
    def fit(
        cls, raw: dict[str, np.ndarray], tfidf: dict[str, np.ndarray | None], truth: Truth, layout: HeadLayout
    ) -> "Calibration":
        """Fit every stage on validation, each on the walk as the stages before it left it."""
        calibration = cls(layout=layout)
        walk = Walk.start(raw, tfidf, layout)
        for name, kind in STAGES:
            stage = kind.fit(walk, truth)
            if stage is not None:
                setattr(calibration, name, stage)
                stage.apply(walk)
        return calibration

    def to_dict(self) -> dict:
        out: dict = {}
        for stage in self.stages():
            for key, value in stage.to_dict().items():
                if isinstance(value, dict) and isinstance(out.get(key), dict):
                    out[key].update(value)  # a later stage's numbers in a head's block (the section's pool, map)
                else:
                    out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict | None, layout: HeadLayout | None = None) -> "Calibration":
        data = data or {}
        return cls(layout or HeadLayout(), **{name: kind.from_dict(data) for name, kind in STAGES})
