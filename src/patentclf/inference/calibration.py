"""Confidence that means what it says: the LLM + TF-IDF blend, the pool with the finer heads,
temperature scaling, the confidence map, the sections stack and its threshold, expected calibration
error and the reliability diagram.

Everything here is fitted on the validation split and stored in ``patentclf.json`` as a few numbers
(``calibration``: ``llm_weight``, ``temperature``, the section's ``confidence_map``; for a
hierarchical model also the section head's ``weights`` (the LLM's section head, the TF-IDF
partner's, and the class and subclass heads summed up to sections, pooled log-linearly),
``sections_threshold`` and the ``sections_stack``), so a bundle's probabilities are calibrated
wherever it is loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from patentclf.corpus.hierarchy import targets
from patentclf.corpus.labels import CODES
from patentclf.model.heads import HeadLayout

EPS = 1e-9
ECE_BINS = 15


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


# Chosen by 5-fold cross-validation on validation (10 repeats; shipped model): 8 bins gave ECE 0.023,
# 10 / 15 / 20 bins 0.028 / 0.031 / 0.032, no map 0.048 (centred isotonic regression: 0.026-0.031).
CONFIDENCE_MAP_BINS = 8
TIE_MARGIN = 1e-6
# The map is flat where isotonic regression pooled groups (shipped: 0.60-0.72 all read 0.659), which
# would tie a quarter of the rows; this share of the raw confidence keeps them in order (a user sorting
# by confidence to review the least sure first). CV ECE on validation: 0.028 without, 0.028 with.
ORDER_MIX = 0.02


def fit_confidence_map(probabilities: np.ndarray, labels: np.ndarray, bins: int = CONFIDENCE_MAP_BINS) -> dict:
    """Top-label recalibration fitted on validation: the predicted section's probability against how
    often such predictions are right. Rows are sorted by confidence into ``bins`` equal-count groups;
    each group gives (mean confidence, accuracy), made non-decreasing (isotonic regression); beyond
    the outer groups the map is flat (no guess at (1, 1): the most confident group may well be
    wrong one time in ten). Log-linear pooling fitted for NLL leaves the top confidence too
    high near 1 and too low in the middle; this bends it back without changing any prediction."""
    from sklearn.isotonic import IsotonicRegression

    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    groups = np.array_split(np.argsort(confidence, kind="stable"), min(bins, len(confidence)))
    x = np.array([confidence[g].mean() for g in groups])
    # Each group's accuracy with one success and one failure added (Laplace): a group that was always
    # right on a few hundred rows does not make the model claim certainty.
    accuracy = [(correct[g].sum() + 1.0) / (len(g) + 2.0) for g in groups]
    y = IsotonicRegression(y_min=0.0, y_max=1.0).fit(x, accuracy).predict(x)
    return {"confidence": np.round(x, 6).tolist(), "accuracy": np.round(y, 6).tolist()}


def apply_confidence_map(probabilities: np.ndarray, confidence_map: dict) -> np.ndarray:
    """Each row's top probability read through the map (linear between its points, mixed with
    ``ORDER_MIX`` of itself so that a higher confidence stays higher); the other sections share the
    rest in their old proportions, none above the top (the excess is spread over the others), so the
    row still sums to 1 and its best section stays best."""
    out = probabilities.astype(float, copy=True)
    rows, width = np.arange(len(out)), out.shape[1]
    best = out.argmax(axis=1)
    raw_top = out[rows, best]
    mapped = np.interp(raw_top, confidence_map["confidence"], confidence_map["accuracy"])
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


# What the sections stacker reads per (patent, section), each as a logit: the LLM's multi-label head,
# the pooled main-section probability, and the class / subclass heads of the LLM and of TF-IDF summed
# up to sections.
STACK_FEATURES = ("sections", "section", "class", "subclass", "tfidf", "tfidf_class", "tfidf_subclass")


def stack_features(tables: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """(rows x 9, len(names)) logits of the named (rows, 9) tables, one row per (patent, section)."""
    columns = []
    for name in names:
        p = np.clip(tables[name], 1e-6, 1 - 1e-6)
        columns.append(np.log(p / (1 - p)).reshape(-1))
    return np.stack(columns, axis=1)


def fit_sections_stack(tables: dict[str, np.ndarray], truth: np.ndarray, main: np.ndarray) -> dict:
    """Whether a patent belongs to a section, as one logistic regression over every source's view of
    that section (shared across sections), fitted on validation; and the threshold on its
    probabilities with the best micro-F1. Probed on the shipped model by 5-fold cross-validation on
    validation: micro-F1 0.816 against 0.807 for the multi-label head alone."""
    from sklearn.linear_model import LogisticRegression

    names = [name for name in STACK_FEATURES if name in tables]
    model = LogisticRegression(C=1.0, max_iter=2000).fit(stack_features(tables, names), truth.reshape(-1))
    stack = {
        "features": names,
        "coefficients": np.round(model.coef_[0], 6).tolist(),
        "intercept": round(float(model.intercept_[0]), 6),
    }
    stack["threshold"] = fit_threshold(stacked_sections(tables, stack), truth, main)
    return stack


def stacked_sections(tables: dict[str, np.ndarray], stack: dict) -> np.ndarray:
    """(rows, 9) probabilities that each patent belongs to each section, from a fitted stack."""
    rows = next(iter(tables.values())).shape[0]
    scores = stack_features(tables, stack["features"]) @ np.array(stack["coefficients"]) + stack["intercept"]
    return (1.0 / (1.0 + np.exp(-scores))).reshape(rows, -1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins,
    weighted by how many predictions fall in each."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(total)


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin: its range, how many predictions, their mean confidence and accuracy."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        if members.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return rows


def plot_reliability(table: list[dict], ece: float, path: str | Path, title: str = "Reliability") -> Path:
    """Accuracy against confidence per bin, beside the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    centres = [(r["low"] + r["high"]) / 2 for r in table]
    width = (table[0]["high"] - table[0]["low"]) if table else 0.066
    ax.bar(centres, [r["accuracy"] for r in table], width=width * 0.9, alpha=0.7, label="accuracy in bin")
    ax.plot(
        [r["confidence"] for r in table],
        [r["accuracy"] for r in table],
        marker="o",
        color="black",
        label="(mean confidence, accuracy)",
    )
    for r, x in zip(table, centres):
        ax.text(x, 0.02, str(r["n"]), ha="center", fontsize=7, rotation=90)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted section")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# -- the fitted post-processing, as one typed object ------------------------------------------------
#
# ``Calibration`` turns the model's raw head probabilities (and the TF-IDF partner's, aligned to the
# same codes) into the answer: each softmax head blended with TF-IDF, the section pooled with the finer
# heads, the sections stack, and the confidence map, in that order. ``fit`` and ``apply`` sit side by
# side here, so a new stage is one class below plus a line in each of them.

HEADS = ("section", "class", "subclass")  # the softmax heads, each blended on its own


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
class SectionPool:
    """The main section as a log-linear pool of :func:`section_sources` (weights fitted for NLL)."""

    weights: dict[str, float]

    @classmethod
    def fit(cls, sources: dict[str, np.ndarray], labels: np.ndarray) -> "SectionPool":
        return cls(dict(zip(sources, fit_combination(list(sources.values()), labels))))

    def apply(self, sources: dict[str, np.ndarray]) -> np.ndarray:
        return combine([sources[name] for name in self.weights], list(self.weights.values()))


@dataclass
class ConfidenceMap:
    """The predicted section's probability read through what validation showed (see
    :func:`fit_confidence_map`); never changes which section is best."""

    confidence: list[float]
    accuracy: list[float]

    @classmethod
    def fit(cls, probabilities: np.ndarray, labels: np.ndarray) -> "ConfidenceMap":
        return cls(**fit_confidence_map(probabilities, labels))

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        return apply_confidence_map(probabilities, asdict(self))


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
class SectionsStack:
    """Every section the patent belongs to: a logistic regression over each source's view of a section
    (see :func:`fit_sections_stack`) and the threshold on its probabilities."""

    features: list[str]
    coefficients: list[float]
    intercept: float
    threshold: float
    fitted_on: str = ""

    @classmethod
    def fit(cls, tables: dict[str, np.ndarray], truth: np.ndarray, main: np.ndarray) -> "SectionsStack":
        return cls(**fit_sections_stack(tables, truth, main), fitted_on=f"validation ({len(truth)} rows)")

    def apply(self, tables: dict[str, np.ndarray]) -> np.ndarray:
        return stacked_sections(tables, asdict(self))


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
class Calibration:
    """A bundle's fitted post-processing: ``apply(raw, tfidf)`` maps each head's raw probabilities
    (rows x codes) and the TF-IDF partner's (``None`` where there is none) to the answer's tables;
    ``fit`` learns it on validation; ``to_dict`` / ``from_dict`` are its form in ``patentclf.json``.
    An empty Calibration passes the model's own probabilities through."""

    layout: HeadLayout = field(default_factory=HeadLayout)
    heads: dict[str, HeadBlend] = field(default_factory=dict)
    pool: SectionPool | None = None
    sections_threshold: float | None = None
    stack: SectionsStack | None = None
    confidence_map: ConfidenceMap | None = None

    def tfidf_heads(self) -> set[str]:
        """The heads whose TF-IDF probabilities ``apply`` reads (the others are not worth computing)."""
        stacked = set(self.stack.features) if self.stack else set()
        wanted = {"section"} if self.pool else set()
        for head in HEADS:
            if self.heads.get(head, HeadBlend()).llm_weight < 1.0 or {"tfidf", f"tfidf_{head}"} & stacked:
                wanted.add(head)
        return wanted

    def apply(self, raw: dict[str, np.ndarray], tfidf: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """The answer's tables: each softmax head, ``sections`` (with ``sections_threshold``, one per row)."""
        used = self.tfidf_heads()
        tfidf = {head: tfidf.get(head) if head in used else None for head in HEADS}
        out = dict(raw)
        for head in HEADS:
            if head not in raw:
                continue
            if head == "section" and self.pool and tfidf["section"] is not None:
                out[head] = self.pool.apply(section_sources(raw, tfidf["section"], self.layout))
            else:
                out[head] = self.heads.get(head, HeadBlend()).apply(raw[head], tfidf[head])
        if "sections" in raw:  # the stack reads the pooled section, before the confidence map
            threshold = 0.5 if self.sections_threshold is None else self.sections_threshold
            if self.stack:
                tables = stack_tables(raw, out["section"], tfidf, self.layout)
                if all(name in tables for name in self.stack.features):
                    out["sections"] = self.stack.apply(tables)
                    threshold = self.stack.threshold
            out["sections_threshold"] = np.full(len(raw["section"]), threshold)
        # The map was fitted on the full path's output: not on the LLM alone when TF-IDF is switched off.
        section = self.heads.get("section", HeadBlend())
        full_path = tfidf["section"] is not None or (section.llm_weight >= 1.0 and not self.pool)
        if self.confidence_map and full_path:
            out["section"] = self.confidence_map.apply(out["section"])
        return out

    @classmethod
    def fit(
        cls, raw: dict[str, np.ndarray], tfidf: dict[str, np.ndarray | None], truth: Truth, layout: HeadLayout
    ) -> "Calibration":
        """Fit every stage on validation, each on the output of the stages before it."""
        calibration = cls(layout=layout)
        main_section = None
        for head in HEADS:
            if head not in raw:
                continue
            labels = truth.head(head)
            rows = np.array([i for i, label in enumerate(labels) if label is not None])
            if len(rows) == 0:
                continue
            y = np.array([labels[i] for i in rows])
            llm, partner = raw[head][rows], None if tfidf.get(head) is None else tfidf[head][rows]
            fitted = calibration.heads[head] = HeadBlend.fit(llm, partner, y)
            if head != "section":
                continue
            # The main predictions the sections threshold and stack are fitted with.
            uses_partner = partner is not None and fitted.llm_weight < 1.0
            main_section = blend(llm, partner if uses_partner else None, fitted.llm_weight if uses_partner else 1.0, 1.0)
            if layout.hierarchical and partner is not None:
                sources = section_sources({name: values[rows] for name, values in raw.items()}, partner, layout)
                calibration.pool = SectionPool.fit(sources, y)
                main_section = calibration.pool.apply(sources)
        # Neither the stack nor the map exists yet, so this section is the pooled one: what the stack
        # reads and (the stack leaves the section alone) what the map is fitted on.
        pooled = calibration.apply(raw, tfidf)
        rows = np.array([i for i, found in enumerate(truth.sections) if found is not None])
        if layout.hierarchical and "sections" in raw and len(rows) and main_section is not None:
            main = main_section.argmax(axis=1)[rows]
            members = np.array([[code in truth.sections[i] for code in CODES] for i in rows])
            calibration.sections_threshold = fit_threshold(raw["sections"][rows], members, main)
            if calibration.pool:
                tables = stack_tables(raw, pooled["section"], tfidf, layout)
                calibration.stack = SectionsStack.fit({name: table[rows] for name, table in tables.items()}, members, main)
        if "section" in calibration.heads:
            calibration.confidence_map = ConfidenceMap.fit(pooled["section"], truth.section)
        return calibration

    def to_dict(self) -> dict:
        out: dict = {head: asdict(fitted) for head, fitted in self.heads.items()}
        if "section" in out:
            if self.pool:
                out["section"]["weights"] = dict(self.pool.weights)
            if self.confidence_map:
                out["section"]["confidence_map"] = asdict(self.confidence_map)
        if self.sections_threshold is not None:
            out["sections_threshold"] = self.sections_threshold
        if self.stack:
            out["sections_stack"] = asdict(self.stack)
        return out

    @classmethod
    def from_dict(cls, data: dict | None, layout: HeadLayout | None = None) -> "Calibration":
        data = data or {}
        known = {f.name for f in fields(HeadBlend)}
        heads = {head: HeadBlend(**{k: v for k, v in data[head].items() if k in known}) for head in HEADS if head in data}
        section = data.get("section", {})
        return cls(
            layout=layout or HeadLayout(),
            heads=heads,
            pool=SectionPool(dict(section["weights"])) if "weights" in section else None,
            sections_threshold=data.get("sections_threshold"),
            stack=SectionsStack(**data["sections_stack"]) if "sections_stack" in data else None,
            confidence_map=ConfidenceMap(**section["confidence_map"]) if "confidence_map" in section else None,
        )

    def describe(self) -> str:
        """What the calibration does, in a sentence or three (for model cards)."""
        section = self.heads.get("section")
        if section is None:
            return "Probabilities are the model's own softmax (not calibrated)."
        if not self.pool:
            return (
                f"Section probabilities are a log-linear blend of the LLM ({section.llm_weight:.2f}) and a TF-IDF + "
                f"logistic regression model trained on the same rows ({1 - section.llm_weight:.2f}), divided by a "
                f"temperature of {section.temperature:.2f}; weights, temperatures and the sections threshold "
                f"({'-' if self.sections_threshold is None else self.sections_threshold}) were fitted on the validation split."
            )
        bins = len(self.confidence_map.confidence) if self.confidence_map else 0
        threshold = self.stack.threshold if self.stack else self.sections_threshold
        return (
            "Section probabilities pool, log-linearly, the LLM's section head, a TF-IDF + logistic regression model "
            "trained on the same rows, and the LLM's class and subclass heads summed up to sections, with weights "
            + ", ".join(f"{name} {weight:.2f}" for name, weight in self.pool.weights.items())
            + f"; the predicted section's probability is then read through a confidence map ({bins} equal-count bins, "
            f"isotonic, with {ORDER_MIX:.0%} of the raw value mixed in so that confidences keep their order), so it "
            "matches how often such answers are right. The sections come from a logistic regression over every head's "
            f"view of each section (threshold {'-' if threshold is None else threshold}); class and subclass "
            "probabilities blend the LLM with TF-IDF and a temperature. All of these were fitted on the validation split."
        )
