"""When not to trust an answer: each review reason, the detector's fit, the reliability points, and
the reasons on a real (tiny) model's predictions."""

import numpy as np
import pytest

from patentclf.inference.review import REASONS, PatentLikeness, Reliability, ReviewRules, fit_uncertain_below

PATENT = (
    "A brake assembly for a bicycle includes a caliper mounted to the frame, a pair of brake pads carried by "
    "the caliper, and a cable actuated lever that moves the pads against the rim of the wheel."
)
GERMAN = (
    "Die Erfindung betrifft eine Bremsanordnung für ein Fahrrad mit einem am Rahmen befestigten Bremssattel, "
    "der zwei Bremsbeläge trägt, die durch einen Seilzug gegen die Felge des Rades gedrückt werden."
)


def likeness(dimension=8, seed=0) -> tuple[PatentLikeness, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    patents = rng.normal(1.0, 0.5, (200, dimension))
    others = rng.normal(-1.0, 0.5, (120, dimension))
    return PatentLikeness.fit(patents, others, patent_flag_rate=0.02), patents, others


def test_each_reason_from_the_text_and_the_confidence():
    rules = ReviewRules(uncertain_below=0.55)
    assert rules.reasons(PATENT, 0.9) == []
    assert rules.reasons("Apparatus", 0.9) == ["too_short"]
    assert rules.reasons(GERMAN, 0.9) == ["not_english"]
    assert rules.reasons(PATENT, 0.5) == ["uncertain"]
    assert rules.reasons("Apparatus", 0.5) == ["too_short", "uncertain"]
    assert set(REASONS) == {"too_short", "not_english", "not_patent_like", "uncertain"}


def test_the_detector_flags_representations_unlike_the_patents_and_few_patents():
    detector, patents, others = likeness()
    rules = ReviewRules(uncertain_below=0.0, patent_likeness=detector)
    assert rules.reasons(PATENT, 0.9, patents[0]) == []
    assert rules.reasons(PATENT, 0.9, others[0]) == ["not_patent_like"]
    held_out = np.random.default_rng(9).normal(1.0, 0.5, (500, 8))
    assert (detector.probability(held_out) < detector.threshold).mean() < 0.06
    # A too-short text is judged on its words; a representation of one word says little more.
    assert rules.reasons("Device", 0.9, others[0]) == ["too_short"]


def test_the_rules_round_trip_through_the_bundle_block():
    detector, *_ = likeness()
    rules = ReviewRules(0.57, detector, {"patents": {"flagged": 0.09}})
    again = ReviewRules.from_dict(rules.to_dict())
    assert again == rules
    assert ReviewRules.from_dict(None) == ReviewRules()  # an older bundle: text checks and 0.5


def test_uncertain_threshold_flags_about_the_share_asked_for():
    confidence = np.linspace(0.3, 1.0, 1000)
    threshold = fit_uncertain_below(confidence, flag_rate=0.08)
    assert (confidence < threshold).mean() == pytest.approx(0.08, abs=0.02)


def test_reliability_reads_what_such_answers_were_right():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 4000)
    correct = rng.uniform(size=4000) < confidence  # calibrated answers
    reliability = Reliability({"subclass": Reliability.table(confidence, correct)})
    assert reliability.right_share("subclass", 0.6) == pytest.approx(0.6, abs=0.06)
    assert reliability.right_share("subclass", 0.9) > reliability.right_share("subclass", 0.4)
    assert reliability.right_share("group", 0.5) is None  # not measured
    assert Reliability.from_dict(reliability.to_dict()) == reliability
