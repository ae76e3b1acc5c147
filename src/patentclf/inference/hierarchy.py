"""One distribution over the CPC hierarchy: a code is never more probable than its parent.

The heads are blended and calibrated one by one (``calibration.py``), so on their own they disagree:
a subclass could read 62% under a class of 33%. Here they are composed top-down by the chain rule,

    P(class) = P(section) x P(class | section),   P(subclass) = P(class) x P(subclass | class),

where ``P(class | section)`` is the class head renormalised within the section (and the subclass's
within the class). The section keeps its calibrated, pooled probability; a class's is then at most its
section's and a subclass's at most its class's, and the heads still say which child is likely. Probed
on the shipped model's validation split: class and subclass top-1 / top-5 within half a point of the
heads alone, top-level ECE of the class 0.066 -> 0.024 and of the subclass 0.069 -> 0.044.

With a patent index, the nearest patents also vote below each parent (``with_evidence``): the share
``mix`` of ``P(child | parent)`` comes from their votes, so a class or subclass the heads never learnt
(the index's patents carry any code) can be suggested, and the levels stay one distribution.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from patentclf.corpus.labels import CODES

TINY = 1e-300


def _within_parents(probabilities: np.ndarray, parent_of_column: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Each child's probability renormalised within its parent, times the parent's probability:
    ``parents[:, parent] * p_child / sum(p_children)`` (children of a parent the head gives nothing
    keep nothing)."""
    sums = np.zeros((probabilities.shape[0], parents.shape[1]))
    np.add.at(sums.T, parent_of_column, probabilities.T)
    share = probabilities / np.maximum(sums[:, parent_of_column], TINY)
    return parents[:, parent_of_column] * share


def top_down(
    section: np.ndarray,
    classes: np.ndarray | None,
    class_codes: Sequence[str],
    subclasses: np.ndarray | None,
    subclass_codes: Sequence[str],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The class and subclass tables (rows x codes) made to agree with ``section`` (rows x 9) by the
    chain rule. A subclass whose class the class head does not have is placed under its section
    (with the other such subclasses of that section; the shipped layouts have none)."""
    section_of = {code: i for i, code in enumerate(CODES)}
    class_table = None
    if classes is not None and len(class_codes):
        class_table = _within_parents(classes, np.array([section_of[c[0]] for c in class_codes]), section)
    subclass_table = None
    if subclasses is not None and len(subclass_codes):
        class_index = {code: i for i, code in enumerate(class_codes)} if class_table is not None else {}
        # Each subclass below its class; one whose class the class head lacks, below its section.
        parents = section if class_table is None else np.concatenate([class_table, section], axis=1)
        offset = 0 if class_table is None else len(class_codes)
        parent = np.array([class_index.get(code[:3], offset + section_of[code[0]]) for code in subclass_codes])
        subclass_table = _within_parents(subclasses, parent, parents)
    return class_table, subclass_table


def neighbour_votes(
    patent_codes: Sequence[Sequence[str]],
    similarities: np.ndarray,
    rows: np.ndarray,
    *,
    width: int,
    k: int,
    power: float,
    other_weight: float,
) -> dict[str, float]:
    """One text's nearest indexed patents' votes for codes cut to ``width`` characters (3: classes,
    4: subclasses): each neighbour's similarity to the ``power``, fully for its main code's, times
    ``other_weight`` for its others' (once a patent each), as the main groups' votes are counted."""
    votes: dict[str, float] = defaultdict(float)
    for similarity, row in zip(similarities[:k], rows[:k]):
        weight = max(float(similarity), 0.0) ** power if np.isfinite(similarity) else 0.0
        if row < 0 or weight <= 0.0:  # a neighbour that weighs nothing casts no vote (no 0 / 0 below)
            continue
        seen: set[str] = set()
        for position, code in enumerate(patent_codes[row]):
            cut = code[:width]
            if len(cut) == width and cut not in seen:
                seen.add(cut)
                votes[cut] += weight if position == 0 else weight * other_weight
    return dict(votes)


def _mix_below(
    parents: dict[str, float], children: dict[str, float], votes: dict[str, float], width: int, mix: float
) -> dict[str, float]:
    """``children`` (code -> probability, each under its parent, the parent's code being the first
    ``width`` characters) with the share ``mix`` of each parent's probability handed out by ``votes``
    among that parent's voted children (all of it where the heads gave the parent no children); a
    parent without votes keeps its children as they are."""
    if mix <= 0 or not votes:
        return dict(children)
    votes = {code: value for code, value in votes.items() if value > 0}
    if not votes:
        return dict(children)
    voted: dict[str, float] = defaultdict(float)
    for code, value in votes.items():
        voted[code[:width]] += value
    held: dict[str, float] = defaultdict(float)
    for code, p in children.items():
        held[code[:width]] += p
    share = {parent: mix if held[parent] > 0 else 1.0 for parent in voted}
    out = {code: p * (1.0 - share[code[:width]]) if code[:width] in share else p for code, p in children.items()}
    for code, value in votes.items():
        parent = code[:width]
        if parents.get(parent, 0.0) > 0:
            # min: (1 - m) P + m P can exceed P by a rounding error; a child never outgrows its parent.
            out[code] = min(out.get(code, 0.0) + parents[parent] * share[parent] * value / voted[parent], parents[parent])
    return out


def with_evidence(
    section: dict[str, float],
    classes: dict[str, float],
    subclasses: dict[str, float],
    class_votes: dict[str, float],
    subclass_votes: dict[str, float],
    *,
    class_mix: float,
    subclass_mix: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """One text's class and subclass probabilities (code -> p, from :func:`top_down`) with the
    neighbours' votes mixed in below their parents: ``P(class) = P(section) x ((1 - class_mix)
    P_heads(class | section) + class_mix V(class | section))`` where the neighbours voted within the
    section, and the same for subclasses below their (new) classes. The levels still agree."""
    mixed_classes = _mix_below(section, classes, class_votes, 1, class_mix)
    # Each subclass's share of its class as the heads said, carried onto the class's new probability.
    factor = {code: mixed_classes.get(code, 0.0) / p for code, p in classes.items() if p > 0 and mixed_classes.get(code) != p}
    rescaled = {code: p * factor[code[:3]] if code[:3] in factor else p for code, p in subclasses.items()}
    mixed_subclasses = _mix_below(mixed_classes, rescaled, subclass_votes, 3, subclass_mix)
    return mixed_classes, mixed_subclasses


def best(probabilities: dict[str, float], top: int) -> list[tuple[str, float]]:
    """The ``top`` most probable codes, best first (ties by code, so the order never varies)."""
    return sorted(probabilities.items(), key=lambda item: (-item[1], item[0]))[:top]


MIXES = (0.0, 0.1, 0.2, 0.3, 0.5)


def row_tables(
    section: np.ndarray, classes: np.ndarray, class_codes: Sequence[str], subclasses: np.ndarray, subclass_codes: Sequence[str]
):
    """One row's three levels as code -> probability dicts (codes the heads give nothing left out)."""
    return (
        dict(zip(CODES, map(float, section))),
        {code: float(p) for code, p in zip(class_codes, classes) if p > 0},
        {code: float(p) for code, p in zip(subclass_codes, subclasses) if p > 0},
    )


def fit_mixes(
    tables: dict[str, np.ndarray],
    class_codes: Sequence[str],
    subclass_codes: Sequence[str],
    patent_codes: Sequence[Sequence[str]],
    similarities: np.ndarray,
    rows: np.ndarray,
    voting,
    truth_classes: Sequence[str | None],
    truth_subclasses: Sequence[str | None],
) -> tuple[float, float, dict[str, float]]:
    """``(class_mix, subclass_mix, figures)``: the shares of the neighbours' votes (one of ``MIXES``)
    with the best validation top-5 + top-1 / 2 of the main class, then of the main subclass, given the
    coherent ``tables`` (section, class, subclass) and each row's nearest patents; ``voting`` gives k,
    the power and the other codes' weight."""
    settings = dict(k=voting.k, power=voting.power, other_weight=voting.other_weight)
    per_row = [
        (
            row_tables(tables["section"][i], tables["class"][i], class_codes, tables["subclass"][i], subclass_codes),
            neighbour_votes(patent_codes, similarities[i], rows[i], width=3, **settings),
            neighbour_votes(patent_codes, similarities[i], rows[i], width=4, **settings),
        )
        for i in range(len(similarities))
    ]

    def figures(class_mix: float, subclass_mix: float) -> dict[str, float]:
        ranked = [
            with_evidence(*levels, class_votes, subclass_votes, class_mix=class_mix, subclass_mix=subclass_mix)
            for levels, class_votes, subclass_votes in per_row
        ]
        out = {}
        for name, truth, level in (("class", truth_classes, 0), ("subclass", truth_subclasses, 1)):
            scored = [(t, [c for c, _ in best(r[level], 5)]) for t, r in zip(truth, ranked) if t]
            for k in (1, 5):
                out[f"{name}_top{k}"] = round(float(np.mean([t in codes[:k] for t, codes in scored])) if scored else 0.0, 4)
        return out

    def score(found: dict[str, float], level: str) -> float:
        return found[f"{level}_top5"] + found[f"{level}_top1"] / 2

    class_mix = max(MIXES, key=lambda m: (score(figures(m, 0.0), "class"), -m))
    subclass_mix = max(MIXES, key=lambda m: (score(figures(class_mix, m), "subclass"), -m))
    return class_mix, subclass_mix, figures(class_mix, subclass_mix)
