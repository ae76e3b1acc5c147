"""One distribution over the hierarchy: the chain rule, the neighbours' votes below each parent."""

import numpy as np
import pytest

from patentclf.corpus.labels import CODES
from patentclf.inference.groups import GroupPriors, GroupVoting, suggest_groups
from patentclf.inference.hierarchy import MIXES, best, fit_mixes, neighbour_votes, row_tables, top_down, with_evidence

CLASSES = ["A61", "A63", "C07", "G06", "H04"]
SUBCLASSES = ["A61K", "A61B", "A63B", "C07D", "G06F", "G06N", "H04L"]


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_tables(rows=50, seed=0):
    rng = np.random.default_rng(seed)
    return (
        softmax(rng.normal(0, 2, (rows, 9))),
        softmax(rng.normal(0, 2, (rows, len(CLASSES)))),
        softmax(rng.normal(0, 2, (rows, len(SUBCLASSES)))),
    )


def assert_coherent(section: dict, classes: dict, subclasses: dict, groups=()):
    for code, p in classes.items():
        assert p <= section[code[0]] + 1e-9, (code, p, section[code[0]])
    for code, p in subclasses.items():
        assert p <= classes.get(code[:3], 0.0) + 1e-9, (code, p)
    for code, p in groups:
        assert p <= subclasses.get(code[:4], 0.0) + 1e-9, (code, p)
    for letter in CODES:  # the children of a parent never hold more than it
        assert sum(p for c, p in classes.items() if c[0] == letter) <= section[letter] + 1e-9
    for parent in classes:
        assert sum(p for c, p in subclasses.items() if c[:3] == parent) <= classes[parent] + 1e-9


def test_top_down_makes_every_level_agree_and_keeps_the_heads_order_within_a_parent():
    section, classes, subclasses = random_tables()
    class_table, subclass_table = top_down(section, classes, CLASSES, subclasses, SUBCLASSES)
    for i in range(len(section)):
        assert_coherent(*row_tables(section[i], class_table[i], CLASSES, subclass_table[i], SUBCLASSES))
        # A section's classes share all of it (every section here has a class), ordered as the head had them.
        a = [CLASSES.index(c) for c in ("A61", "A63")]
        assert class_table[i, a].sum() == pytest.approx(section[i, CODES.index("A")])
        assert np.argmax(class_table[i, a]) == np.argmax(classes[i, a])
    # The brake of the issue: a subclass of 21% under a class of 3.4% cannot happen.
    assert (subclass_table[:, SUBCLASSES.index("A61K")] <= class_table[:, CLASSES.index("A61")] + 1e-12).all()


def test_a_subclass_whose_class_the_class_head_lacks_sits_under_its_section():
    section, classes, subclasses = random_tables(5)
    class_table, subclass_table = top_down(section, classes[:, :4], CLASSES[:4], subclasses, SUBCLASSES)
    h = CODES.index("H")
    assert subclass_table[:, SUBCLASSES.index("H04L")] == pytest.approx(section[:, h])


def test_votes_bring_in_codes_the_heads_never_learnt_and_the_levels_still_agree():
    section, classes, subclasses = random_tables(1)
    class_table, subclass_table = top_down(section, classes, CLASSES, subclasses, SUBCLASSES)
    levels = row_tables(section[0], class_table[0], CLASSES, subclass_table[0], SUBCLASSES)
    # Neighbours voting for F23Q (a class and subclass the heads do not know) and for G06F.
    patents = [["F23Q 3/00", "G06F 3/01"], ["F23Q 2/16"], ["G06F 17/30"]]
    similarities, rows = np.array([0.9, 0.8, 0.7]), np.array([0, 1, 2])
    votes = {w: neighbour_votes(patents, similarities, rows, width=w, k=3, power=1.0, other_weight=0.5) for w in (3, 4)}
    assert votes[4] == pytest.approx({"F23Q": 1.7, "G06F": 0.45 + 0.7})
    mixed_classes, mixed_subclasses = with_evidence(*levels, votes[3], votes[4], class_mix=0.3, subclass_mix=0.3)
    assert mixed_classes["F23"] == pytest.approx(section[0, CODES.index("F")])  # the heads gave F nothing below it
    assert mixed_subclasses["F23Q"] == pytest.approx(mixed_classes["F23"])
    assert_coherent(levels[0], mixed_classes, mixed_subclasses)
    # Without votes, or with a share of 0, the heads' answer stands.
    assert with_evidence(*levels, {}, {}, class_mix=0.3, subclass_mix=0.3) == (levels[1], levels[2])
    assert with_evidence(*levels, votes[3], votes[4], class_mix=0.0, subclass_mix=0.0) == (levels[1], levels[2])


def test_groups_never_outgrow_their_subclass():
    section, classes, subclasses = random_tables(20, seed=3)
    class_table, subclass_table = top_down(section, classes, CLASSES, subclasses, SUBCLASSES)
    patent_groups = [["G06F 3/00", "H04L 9/00"], ["G06F 17/00"], ["A61K 31/00"], ["C07D 401/00"]]
    priors = GroupPriors(patent_groups, 0.5)
    voting = GroupVoting(k=4, power=1.0, other_weight=0.5, prior=0.5, sharpness=0.25)  # sharpness: no longer applied
    for i in range(20):
        levels = row_tables(section[i], class_table[i], CLASSES, subclass_table[i], SUBCLASSES)
        groups = suggest_groups(
            voting, priors, patent_groups, np.array([0.9, 0.8, 0.7, 0.6]), np.arange(4), levels[2], SUBCLASSES
        )
        assert groups
        assert_coherent(*levels, groups)


def test_fit_mixes_picks_the_share_that_ranks_the_truth_best():
    rng = np.random.default_rng(1)
    rows = 60
    section, classes, subclasses = random_tables(rows, seed=5)
    class_table, subclass_table = top_down(section, classes, CLASSES, subclasses, SUBCLASSES)
    # Every row's neighbours are patents of its true subclass: their votes are worth following.
    truth = [SUBCLASSES[i] for i in rng.integers(0, len(SUBCLASSES), rows)]
    patents = [[f"{code} 1/00"] for code in SUBCLASSES]
    neighbours = np.array([[SUBCLASSES.index(code)] for code in truth])
    class_mix, subclass_mix, figures = fit_mixes(
        {"section": section, "class": class_table, "subclass": subclass_table},
        CLASSES,
        SUBCLASSES,
        patents,
        np.full((rows, 1), 0.9),
        neighbours,
        GroupVoting(k=1, power=1.0),
        [code[:3] for code in truth],
        truth,
    )
    assert class_mix in MIXES and subclass_mix in MIXES
    assert subclass_mix == max(MIXES)
    heads_alone = np.mean([SUBCLASSES[j] == t for j, t in zip(subclass_table.argmax(axis=1), truth)])
    assert figures["subclass_top1"] > heads_alone + 0.05


def test_best_orders_ties_by_code():
    assert best({"B": 0.2, "A": 0.2, "C": 0.5}, 2) == [("C", 0.5), ("A", 0.2)]


def test_neighbours_that_weigh_nothing_cast_no_vote():
    """A neighbour with a negative (or NaN) cosine weighs 0: it must not make a parent 'voted' with
    nothing to share (a 0 / 0), nor take a share of the heads' probabilities."""
    section, classes, subclasses = random_tables(1, seed=7)
    class_table, subclass_table = top_down(section, classes, CLASSES, subclasses, SUBCLASSES)
    levels = row_tables(section[0], class_table[0], CLASSES, subclass_table[0], SUBCLASSES)
    patents = [["G06F 3/00"], ["H04L 9/00"]]
    for similarity in (-0.1, float("nan")):
        votes = {
            w: neighbour_votes(patents, np.array([0.5, similarity]), np.arange(2), width=w, k=2, power=2.0, other_weight=0.5)
            for w in (3, 4)
        }
        assert "H04" not in votes[3] and "H04L" not in votes[4]
        mixed_classes, mixed_subclasses = with_evidence(*levels, votes[3], votes[4], class_mix=0.3, subclass_mix=0.3)
        assert mixed_classes["H04"] == levels[1]["H04"]  # H got no vote: its classes are the heads'
        assert_coherent(levels[0], mixed_classes, mixed_subclasses)


def test_only_the_orphan_subclasses_sit_under_their_section():
    """One subclass whose class the class head lacks does not move the others from under their class."""
    section, classes, subclasses = random_tables(10, seed=2)
    codes = SUBCLASSES + ["G16H"]  # G16 is not among CLASSES
    wider = softmax(np.random.default_rng(4).normal(0, 2, (10, len(codes))))
    class_table, subclass_table = top_down(section, classes, CLASSES, wider, codes)
    for i in range(10):
        levels = row_tables(section[i], class_table[i], CLASSES, subclass_table[i], codes)
        orphan = levels[2].pop("G16H")
        assert orphan <= section[i, CODES.index("G")] + 1e-12
        assert_coherent(*levels)


def test_a_model_without_finer_heads_gets_groups_under_its_sections():
    """A section-only model with an index: classes and subclasses from the votes alone (share 1),
    below the sections, so the main groups stay under them."""
    section = {code: p for code, p in zip(CODES, [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.3, 0.35, 0.05])}
    patents = [["G06F 3/00"], ["G06F 17/00", "H04L 9/00"], ["G06Q 30/00"]]
    votes = {
        w: neighbour_votes(patents, np.array([0.9, 0.8, 0.7]), np.arange(3), width=w, k=3, power=1.0, other_weight=0.5)
        for w in (3, 4)
    }
    classes, subclasses = with_evidence(section, {}, {}, votes[3], votes[4], class_mix=1.0, subclass_mix=1.0)
    assert classes["G06"] == pytest.approx(section["G"]) and subclasses["G06F"] < section["G"]
    patent_groups = [["G06F 3/00"], ["G06F 17/00", "H04L 9/00"], ["G06Q 30/00"]]
    groups = suggest_groups(
        GroupVoting(k=3, power=1.0),
        GroupPriors(patent_groups, 0.5),
        patent_groups,
        np.array([0.9, 0.8, 0.7]),
        np.arange(3),
        subclasses,
        [],
    )
    assert groups and all(p <= section[code[0]] + 1e-12 for code, p in groups)
    assert_coherent(section, classes, subclasses, groups)
