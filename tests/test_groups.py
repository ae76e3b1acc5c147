"""Main groups: parsing them from codes, and the chain rule that combines the model's subclasses with
the nearest patents' votes (groups.py)."""

from __future__ import annotations

import numpy as np
import pytest

from patentclf.corpus.hierarchy import full_code, main_group, parse_group_list, parse_index_codes, title
from patentclf.inference.groups import GroupPriors, GroupVoting, fit_voting, group_figures, hits, suggest_groups


@pytest.mark.parametrize(
    ("text", "group", "full"),
    [
        ("G06F 3/048 (20130101)", "G06F 3/00", "G06F 3/048"),
        ("A61K 038/16 ()", "A61K 38/00", "A61K 38/16"),  # older grants zero-pad the group
        ("h04n 5/44", "H04N 5/00", "H04N 5/44"),
        ("C07D487/14", "C07D 487/00", "C07D 487/14"),
        ("G06F", None, None),  # a subclass has no group
        ("not a code", None, None),
    ],
)
def test_main_group_and_full_code(text, group, full):
    assert main_group(text) == group
    assert full_code(text) == full


def test_code_lists_keep_the_main_code_first_and_each_group_once():
    field = "G06F 3/048 (20130101); G06F 3/0484 (20130101); A61K 038/16 (); H04"
    assert parse_group_list(field) == ["G06F 3/00", "A61K 38/00"]
    # An index keeps full codes, and codes without a group at their own level.
    assert parse_index_codes(field) == ["G06F 3/048", "G06F 3/0484", "A61K 38/16", "H04"]
    assert parse_group_list(None) == [] and parse_index_codes(float("nan")) == [] and parse_index_codes("n/a") == []


def test_groups_have_their_shipped_titles():
    assert title("G06F 3/00").startswith("Input arrangements")
    assert title("A01B 1/00") == "Hand tools"


# Five indexed patents: two subclasses, three groups of F16K and one of G01F.
PATENT_GROUPS = [["F16K 1/00"], ["F16K 1/00", "G01F 1/00"], ["F16K 31/00"], ["F16K 31/00"], ["G01F 1/00"]]
SUBCLASSES = ["F16K", "G01F", "H04N"]


def suggest(voting, similarities, rows, subclass_probabilities):
    priors = GroupPriors(PATENT_GROUPS, voting.other_weight)
    return suggest_groups(
        voting, priors, PATENT_GROUPS, np.array(similarities), np.array(rows), subclass_probabilities, SUBCLASSES
    )


def test_the_chain_rule_subclass_times_votes_within_it():
    voting = GroupVoting(k=3, power=1.0, other_weight=0.5, prior=0.0, sharpness=1.0)
    # Neighbours: two of F16K 31/00 (0.9, 0.8) and one of F16K 1/00 (0.5).
    found = suggest(voting, [0.9, 0.8, 0.5], [2, 3, 0], np.array([0.7, 0.2, 0.1]))
    probabilities = dict(found)
    assert found[0][0] == "F16K 31/00"
    assert probabilities["F16K 31/00"] == pytest.approx(0.7 * 1.7 / 2.2)
    assert probabilities["F16K 1/00"] == pytest.approx(0.7 * 0.5 / 2.2)
    # G01F got no votes and, with no prior, has nothing to say below its subclass.
    assert "G01F 1/00" not in probabilities
    assert sum(probabilities.values()) <= 1.0 + 1e-9
    # With a prior, a subclass without votes shares its probability by its groups' share of the index.
    found = suggest(GroupVoting(k=3, power=1.0, prior=1.0), [0.9, 0.8, 0.5], [2, 3, 0], np.array([0.7, 0.2, 0.1]))
    assert dict(found)["G01F 1/00"] == pytest.approx(0.2)


def test_a_group_is_only_as_likely_as_its_subclass():
    voting = GroupVoting(k=5, power=1.0, prior=0.5)
    # Every neighbour votes G01F, but the model is sure of F16K: F16K's groups come first.
    found = suggest(voting, [0.9, 0.9], [4, 1], np.array([0.95, 0.04, 0.01]))
    assert found[0][0].startswith("F16K")
    assert dict(found)["G01F 1/00"] <= 0.04 + 1e-9
    # The same neighbours with the model unsure between the two let the votes decide.
    found = suggest(voting, [0.9, 0.9], [4, 1], np.array([0.5, 0.5, 0.0]))
    assert found[0][0] == "G01F 1/00"


def test_without_neighbours_the_prior_orders_a_subclass_s_groups():
    voting = GroupVoting(k=5, prior=1.0)
    found = suggest(voting, [], [], np.array([1.0, 0.0, 0.0]))
    assert [code for code, _ in found][:2] in (["F16K 1/00", "F16K 31/00"], ["F16K 31/00", "F16K 1/00"])
    assert sum(p for _, p in found) == pytest.approx(1.0)


def test_without_a_subclass_head_the_votes_alone_decide():
    voting = GroupVoting(k=5, power=1.0, prior=0.1)
    found = suggest(voting, [0.9, 0.1], [4, 2], None)
    assert found[0][0] == "G01F 1/00"


def test_missing_neighbours_are_ignored():
    voting = GroupVoting(k=5, prior=0.0)
    found = suggest(voting, [0.9, -3.4e38], [2, -1], np.array([1.0, 0.0, 0.0]))  # faiss pads with -1
    assert found[0] == ("F16K 31/00", pytest.approx(1.0))


def test_figures_count_the_main_group_or_any_group():
    suggested = [["A 1/00", "B 1/00"], ["C 1/00"], ["D 1/00"]]
    truth = [["B 1/00"], ["X 1/00", "C 1/00"], []]  # the last row has no groups: left out
    assert hits(suggested, truth, 1) == 0.0
    assert hits(suggested, truth, 5) == 0.5
    assert hits(suggested, truth, 5, any_group=True) == 1.0
    assert group_figures(suggested, truth) == {"group_top1": 0.0, "group_top3": 0.5, "group_top5": 0.5, "group_any_top5": 1.0}


def test_fitting_finds_settings_at_least_as_good_as_the_defaults():
    rng = np.random.default_rng(0)
    rows = np.tile(np.arange(5), (40, 1))
    similarities = np.sort(rng.uniform(0.2, 0.9, size=(40, 5)), axis=1)[:, ::-1]
    subclass = np.tile([0.6, 0.4, 0.0], (40, 1))
    truth = [["F16K 31/00"] if i % 2 else ["G01F 1/00"] for i in range(40)]
    voting, score = fit_voting(PATENT_GROUPS, similarities, rows, subclass, SUBCLASSES, truth)
    priors = GroupPriors(PATENT_GROUPS, GroupVoting().other_weight)
    default = [
        [g for g, _ in suggest_groups(GroupVoting(), priors, PATENT_GROUPS, similarities[i], rows[i], subclass[i], SUBCLASSES)]
        for i in range(40)
    ]
    assert score >= hits(default, truth, 5) + hits(default, truth, 1) / 2
    assert GroupVoting.from_dict(voting.to_dict()) == voting
    assert GroupVoting.from_dict({"k": 7, "unknown": 1}) == GroupVoting(k=7)
