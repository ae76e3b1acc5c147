"""Main groups (``G06F 3/00``): the model's subclass probabilities, refined below the subclass by the
votes of the nearest indexed patents (``index.py``).

The two are combined by the chain rule, ``P(group) = P(subclass) x P(group | subclass)``: the model
says which subclass, the neighbours say which of its groups. ``P(group | subclass)`` is the neighbours'
votes for the group (each neighbour's similarity to the power ``power``; its main code's group counts
fully, its other groups ``other_weight``), smoothed by ``prior`` times the group's share of the index's
patents in that subclass, over the subclass's votes plus ``prior``. The subclass probabilities are the
answer's own (``hierarchy.py``: one distribution with the section and class), so a group is never more
probable than its subclass, and the probabilities over every group sum to at most 1. The settings are
fitted on the validation split (``fit``) and kept in the index's ``index.json``, with ``class_mix`` and
``subclass_mix``, the share of the class and subclass probabilities below their parents that the same
neighbours' votes decide (``hierarchy.with_evidence``). ``sharpness`` (a power on the subclass
probabilities) is read from older indexes but no longer applied: it let a group outgrow its subclass.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np

TOP_GROUPS = 5
PRIOR_GROUPS = 3  # of a likely subclass without votes, its most common groups still compete
TOP_SUBCLASSES = 10


@dataclass(frozen=True)
class GroupVoting:
    k: int = 30
    power: float = 2.0
    other_weight: float = 0.5
    prior: float = 0.5
    sharpness: float = 1.0  # read from older indexes, not applied (see the module's docstring)
    class_mix: float = 0.0
    subclass_mix: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "GroupVoting":
        # An index's ``voting`` also records the figures it was fitted to: only the settings are read.
        known = {name: value for name, value in (data or {}).items() if name in cls.__dataclass_fields__}
        return cls(**known)


class GroupPriors:
    """Each subclass's groups in an index, by their share of its patents (main code 1, others ``other_weight``)."""

    def __init__(self, patent_groups: list[list[str]], other_weight: float):
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for groups in patent_groups:
            for position, group in enumerate(groups):
                counts[group[:4]][group] += 1.0 if position == 0 else other_weight
        self.shares: dict[str, dict[str, float]] = {}
        self.common: dict[str, list[str]] = {}
        for subclass, table in counts.items():
            total = sum(table.values())
            self.shares[subclass] = {group: value / total for group, value in table.items()}
            self.common[subclass] = sorted(table, key=table.get, reverse=True)[:PRIOR_GROUPS]


def suggest_groups(
    voting: GroupVoting,
    priors: GroupPriors,
    patent_groups: list[list[str]],
    similarities: np.ndarray,
    rows: np.ndarray,
    subclass_probabilities: np.ndarray | dict[str, float] | None,
    subclass_codes: list[str],
    top: int = TOP_GROUPS,
) -> list[tuple[str, float]]:
    """One text's main groups, best first, as (group, probability): ``similarities`` / ``rows`` are its
    nearest indexed patents (best first), ``subclass_probabilities`` the answer's, over ``subclass_codes``
    or as a code -> probability dict (``None`` for a model without a subclass head: the votes alone then
    say the subclass)."""
    votes: dict[str, float] = defaultdict(float)
    for similarity, row in zip(similarities[: voting.k], rows[: voting.k]):
        if row < 0:
            continue
        weight = max(float(similarity), 0.0) ** voting.power
        for position, group in enumerate(patent_groups[row]):
            votes[group] += weight if position == 0 else weight * voting.other_weight
    by_subclass: dict[str, float] = defaultdict(float)
    for group, value in votes.items():
        by_subclass[group[:4]] += value
    if isinstance(subclass_probabilities, dict):
        subclass_p = dict(sorted(subclass_probabilities.items(), key=lambda item: (-item[1], item[0]))[:TOP_SUBCLASSES])
    elif subclass_probabilities is not None:
        p = np.clip(subclass_probabilities, 0.0, 1.0)
        order = np.argsort(-p, kind="stable")[:TOP_SUBCLASSES]
        subclass_p = {subclass_codes[i]: float(p[i]) for i in order}
    else:
        total = sum(by_subclass.values()) or 1.0
        subclass_p = {subclass: value / total for subclass, value in by_subclass.items()}
    scored: list[tuple[str, float]] = []
    for subclass, p_subclass in subclass_p.items():
        shares = priors.shares.get(subclass, {})
        candidates = set(priors.common.get(subclass, [])) | {g for g in votes if g[:4] == subclass}
        denominator = by_subclass.get(subclass, 0.0) + voting.prior
        if not candidates or denominator <= 0:
            continue
        for group in candidates:
            within = (votes.get(group, 0.0) + voting.prior * shares.get(group, 0.0)) / denominator
            scored.append((group, p_subclass * within))
    scored.sort(key=lambda item: (-item[1], item[0]))  # ties by code: a set's order varies between runs
    return scored[:top]


def suggested_codes(
    voting: GroupVoting,
    patent_groups: list[list[str]],
    similarities: np.ndarray,
    rows: np.ndarray,
    subclass_probabilities: np.ndarray | None,
    subclass_codes: list[str],
    priors: GroupPriors | None = None,
) -> list[list[str]]:
    """The top main groups of each row (codes only), for scoring: :func:`suggest_groups` row by row."""
    priors = priors or GroupPriors(patent_groups, voting.other_weight)
    return [
        [
            group
            for group, _ in suggest_groups(
                voting,
                priors,
                patent_groups,
                similarities[i],
                rows[i],
                None if subclass_probabilities is None else subclass_probabilities[i],
                subclass_codes,
            )
        ]
        for i in range(len(similarities))
    ]


def hits(suggested: list[list[str]], truth: list[list[str]], k: int, *, any_group: bool = False) -> float:
    """Share of rows with a main group (``any_group``: any of its groups) among the first ``k`` suggested;
    rows without groups are left out."""
    scored = [(s, t) for s, t in zip(suggested, truth) if t]
    if not scored:
        return float("nan")
    return float(np.mean([bool(set(s[:k]) & (set(t) if any_group else {t[0]})) for s, t in scored]))


def group_figures(suggested: list[list[str]], truth: list[list[str]]) -> dict[str, float]:
    """Main-group top-1 / top-3 / top-5 (the main code's group), and any of the patent's groups in the top 5."""
    out = {f"group_top{k}": hits(suggested, truth, k) for k in (1, 3, 5)}
    out["group_any_top5"] = hits(suggested, truth, 5, any_group=True)
    return {name: round(value, 4) for name, value in out.items()}


GRID = {
    "k": (5, 10, 20, 30, 60),
    "power": (1.0, 2.0, 4.0, 8.0),
    "other_weight": (0.25, 0.5, 1.0),
    "prior": (0.05, 0.1, 0.5, 2.0),
}


def fit_voting(
    patent_groups: list[list[str]],
    similarities: np.ndarray,
    rows: np.ndarray,
    subclass_probabilities: np.ndarray | None,
    subclass_codes: list[str],
    truth: list[list[str]],
) -> tuple[GroupVoting, float]:
    """The settings that maximise validation main-group top-5 (+ top-1 / 2 as tie-break), one setting at
    a time from the defaults, twice over: (settings, score)."""
    best, best_score = GroupVoting(), -1.0
    priors_cache: dict[float, GroupPriors] = {}

    def score(voting: GroupVoting) -> float:
        if voting.other_weight not in priors_cache:
            priors_cache[voting.other_weight] = GroupPriors(patent_groups, voting.other_weight)
        priors = priors_cache[voting.other_weight]
        suggested = suggested_codes(voting, patent_groups, similarities, rows, subclass_probabilities, subclass_codes, priors)
        return hits(suggested, truth, 5) + hits(suggested, truth, 1) / 2

    best_score = score(best)
    for _, (name, values) in itertools.product(range(2), GRID.items()):
        for value in values:
            candidate = replace(best, **{name: value})
            if candidate == best:
                continue
            value_score = score(candidate)
            if value_score > best_score:
                best, best_score = candidate, value_score
    return best, best_score
