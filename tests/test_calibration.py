"""Calibration: the shared maths (temperature, blend, pool, threshold), each stage, the walk through
them, and the pickle-free TF-IDF partner."""

from __future__ import annotations

import numpy as np
import pytest

from patentclf.inference import calibration as cal
from patentclf.model.ensemble import TFIDF_JSON, TFIDF_WEIGHTS, TfidfModels, fit_tfidf
from patentclf.training.evaluation import expected_calibration_error

from .conftest import toy_hierarchy_rows


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_fit_combination_trusts_the_informative_source_and_sums_codes_to_sections():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 9, 4000)
    informative = softmax(rng.normal(0, 1, (4000, 9)) + 3.0 * np.eye(9)[labels])
    noise = softmax(rng.normal(0, 2, (4000, 9)))
    weights = cal.fit_combination([noise, informative], labels)
    assert weights[1] > 0.5 and weights[0] < 0.1
    pooled = cal.combine([noise, informative], weights)
    assert cal.negative_log_likelihood(pooled, labels) <= cal.negative_log_likelihood(informative, labels) + 1e-6
    np.testing.assert_allclose(pooled.sum(axis=1), 1.0)
    # Class probabilities summed up to their sections (a code's first letter).
    summed = cal.to_sections(np.array([[0.5, 0.2, 0.3]]), ["G06", "G01", "H04"], list("ABCDEFGHY"))
    np.testing.assert_allclose(summed[0, 6], 0.7, atol=1e-6)
    np.testing.assert_allclose(summed[0, 7], 0.3, atol=1e-6)


def test_temperature_is_recovered_from_overconfident_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (5000, 9))
    labels = np.array([rng.choice(9, p=p) for p in softmax(logits / 2.5)])
    temperature = cal.fit_temperature(softmax(logits), None, labels, 1.0)
    assert temperature == pytest.approx(2.5, rel=0.12)
    before = cal.negative_log_likelihood(softmax(logits), labels)
    after = cal.negative_log_likelihood(cal.blend(softmax(logits), None, 1.0, temperature), labels)
    assert after < before


def test_blend_weight_follows_the_more_informative_model():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 9, 3000)
    informative = softmax(np.eye(9)[labels] * 3 + rng.normal(0, 1, (3000, 9)))
    noise = softmax(rng.normal(0, 1, (3000, 9)))
    weight, _ = cal.fit_blend(informative, noise, labels)
    assert weight >= 0.9
    weight, _ = cal.fit_blend(noise, informative, labels)
    assert weight <= 0.1
    identity = cal.blend(informative, noise, 1.0, 1.0)
    assert np.allclose(identity, informative / informative.sum(axis=1, keepdims=True))


def test_sections_threshold_and_sets():
    probabilities = np.array([[0.9, 0.6, 0.1], [0.2, 0.8, 0.3], [0.4, 0.1, 0.7]])
    truth = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=bool)
    main = np.array([0, 1, 2])
    threshold = cal.fit_threshold(probabilities, truth, main)
    assert 0.3 < threshold <= 0.4
    sets = cal.section_sets(np.array([[0.1, 0.2, 0.3]]), np.array([0]), 0.5)
    assert sets.tolist() == [[True, False, False]]  # the main prediction is always in the set


def test_confidence_map_bends_overconfidence_back_and_keeps_every_prediction():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2.5, (6000, 9))
    labels = np.array([rng.choice(9, p=p) for p in softmax(logits / 2.0)])  # the true scores are flatter
    probs = softmax(logits)  # over-confident
    fit, held = slice(0, 3000), slice(3000, None)
    confidence_map = cal.ConfidenceMap.learn(probs[fit], labels[fit])
    assert confidence_map.confidence == sorted(confidence_map.confidence)
    assert confidence_map.accuracy == sorted(confidence_map.accuracy)  # non-decreasing
    mapped = confidence_map.read(probs[held])
    before = expected_calibration_error(probs[held].max(1), probs[held].argmax(1) == labels[held])
    after = expected_calibration_error(mapped.max(1), mapped.argmax(1) == labels[held])
    assert before > 0.08 and after < 0.03
    assert (mapped.argmax(1) == probs[held].argmax(1)).all()  # no prediction changes
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0, atol=1e-9)
    # Confidence keeps its order between rows, strictly: no ties where the map is flat, so sorting by
    # confidence to review the least sure first still ranks them.
    order = np.argsort(probs[held].max(1))
    rising = np.diff(probs[held].max(1)[order]) > 1e-9
    assert (np.diff(mapped.max(1)[order])[rising] > 0).all()
    flat = cal.ConfidenceMap([0, 1], [0.7, 0.7]).read(np.array([[0.5, 0.5 - 1e-3] + [1e-3 / 7] * 7, [0.6, 0.4] + [0.0] * 7]))
    assert 0.69 < flat[0, 0] < flat[1, 0] < 0.71
    # A row that was sure to the last bit: the rest of its probability is spread, and it still sums to 1.
    certain = confidence_map.read(np.array([[1.0] + [0.0] * 8, [1 - 1e-12] + [1e-12 / 8] * 8]))
    np.testing.assert_allclose(certain.sum(axis=1), 1.0, atol=1e-9)
    assert (certain.argmax(axis=1) == 0).all() and (certain[:, 1:] > 0).all()
    # Always right on validation still does not make it claim certainty (the review threshold needs < 1).
    always_right = cal.ConfidenceMap.learn(softmax(5.0 * np.eye(9)[labels[:800]]), labels[:800])
    assert 0.99 < max(always_right.accuracy) < 1.0
    # A map that pulls the top down to the runner-up's share: the others are capped at the top.
    squashed = cal.ConfidenceMap([0, 1], [0.4, 0.4]).read(np.array([[0.6, 0.3, 0.1]]))
    np.testing.assert_allclose(squashed[0], [0.404, 0.404, 0.192], atol=1e-5)  # 0.4 and ORDER_MIX of 0.6
    assert squashed[0].argmax() == 0
    floor = cal.ConfidenceMap([0, 1], [0.1, 0.1]).read(np.array([[0.6, 0.3, 0.1]]))
    np.testing.assert_allclose(floor[0], [1 / 3] * 3, atol=1e-5)  # never below 1 / (number of sections)


def test_sections_stack_trusts_the_informative_source_and_beats_the_raw_head():
    rng = np.random.default_rng(5)
    truth = rng.random((3000, 9)) < 0.15
    main = np.argmax(truth + rng.random((3000, 9)) * 0.5, axis=1)
    truth[np.arange(3000), main] = True
    sharp = 1 / (1 + np.exp(-(3.0 * (truth - 0.5) * 2 + rng.normal(0, 1.2, truth.shape))))
    raw_head = 1 / (1 + np.exp(-(1.0 * (truth - 0.5) * 2 + rng.normal(0, 1.5, truth.shape))))
    tables = {"sections": raw_head, "class": sharp}
    stack = cal.SectionsStack.learn(tables, truth, main)
    assert stack.features == ["sections", "class"]
    assert stack.coefficients[1] > stack.coefficients[0] > 0
    assert 0 < stack.threshold < 1

    def micro_f1(probabilities, threshold):
        chosen = cal.section_sets(probabilities, main, threshold)
        return 2 * (chosen & truth).sum() / (chosen.sum() + truth.sum())

    stacked = stack.probabilities(tables)
    assert stacked.shape == truth.shape and ((0 < stacked) & (stacked < 1)).all()
    raw_best = max(micro_f1(raw_head, t) for t in np.arange(0.05, 0.95, 0.025))
    assert micro_f1(stacked, stack.threshold) > raw_best + 0.05


def test_tfidf_models_round_trip_without_pickle(tmp_path):
    rows = toy_hierarchy_rows(240, seed=4)
    texts = [r["text"] for r in rows]
    models = fit_tfidf(
        texts, {"section": [r["section"] for r in rows], "subclass": [r["ipc"][:4] for r in rows]}, max_features=500
    )
    models.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {TFIDF_JSON, TFIDF_WEIGHTS}
    assert b"pickle" not in (tmp_path / TFIDF_JSON).read_bytes()
    loaded = TfidfModels.load(tmp_path)
    probe = ["a turbine engine and a valve", "yarn and fabric weaving", "unseen words only"]
    for target in ("section", "subclass"):
        assert loaded.classes(target) == models.classes(target)
        assert np.allclose(loaded.predict_proba(probe, target), models.predict_proba(probe, target), atol=2e-3)
    assert TfidfModels.load(tmp_path / "missing") is None


def test_a_stored_calibration_reads_back_as_it_was_written():
    """``Calibration.from_dict`` / ``to_dict`` keep every number and key of the shipped bundle's
    calibration (written by the release before the typed object), and a bundle without one passes
    the model's probabilities through."""
    import json

    from patentclf.model.bundle import INFO_FILE, default_model_dir

    stored = json.loads((default_model_dir() / INFO_FILE).read_text())["calibration"]
    # The block also holds the answer's checks, which review.py reads (ReviewRules, Reliability).
    stages = {key: value for key, value in stored.items() if key not in ("review", "reliability")}
    assert cal.Calibration.from_dict(stored).to_dict() == stages
    assert set(stored) - set(stages) == {"review", "reliability"}
    empty = cal.Calibration.from_dict({})
    probs = np.array([[0.7, 0.2, 0.1] + [0.0] * 6])
    assert empty.tfidf_heads() == set()
    np.testing.assert_allclose(
        empty.apply({"section": probs}, {})["section"], np.clip(probs, cal.EPS, 1) / np.clip(probs, cal.EPS, 1).sum(), atol=1e-9
    )


def test_calibrate_without_tfidf_refits_the_calibration_training_stored(tmp_path, tiny_hierarchy_bundle):
    """Training fits the calibration through the same ``Calibration.fit`` as ``patentclf calibrate``:
    a refit on the same rows (keeping the TF-IDF partner) gives the same numbers."""
    import json
    import shutil

    from typer.testing import CliRunner

    from patentclf.cli import app
    from patentclf.model.bundle import INFO_FILE, read_info

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_hierarchy_bundle, folder)
    before = read_info(folder).calibration
    assert {"section", "class", "subclass", "sections_threshold", "sections_stack"} <= set(before)
    result = CliRunner().invoke(app, ["calibrate", "--model", str(folder), "--no-tfidf", "--no-evaluate"])
    assert result.exit_code == 0, result.output
    after = json.loads((folder / INFO_FILE).read_text())["calibration"]
    assert after.keys() == before.keys()
    for head in ("section", "class", "subclass"):
        assert after[head]["llm_weight"] == before[head]["llm_weight"]
        assert after[head]["temperature"] == pytest.approx(before[head]["temperature"], abs=1e-6)
    assert after["section"]["weights"] == pytest.approx(before["section"]["weights"], abs=1e-4)
    assert after["sections_stack"]["coefficients"] == pytest.approx(before["sections_stack"]["coefficients"], abs=1e-5)


def test_calibrate_refits_a_bundle_in_place_and_rewrites_its_figures(tiny_hierarchy_bundle, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from patentclf.cli import app
    from patentclf.model.bundle import read_info

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_hierarchy_bundle, bundle)
    info = read_info(bundle)
    # Stale figures and an older calibration (no confidence map, no stack), as a bundle from before.
    for figures in info.metrics.values():
        figures["accuracy"] = -1.0
    del info.calibration["sections_stack"], info.calibration["section"]["confidence_map"]
    (bundle / "patentclf.json").write_text(info.to_json())
    tfidf_before = (bundle / "tfidf.safetensors").read_bytes()

    result = CliRunner().invoke(app, ["calibrate", "--model", str(bundle), "--no-tfidf"])
    assert result.exit_code == 0, result.output
    after = read_info(bundle)
    assert "sections_stack" in after.calibration and "confidence_map" in after.calibration["section"]
    assert set(after.metrics) >= {"validation", "test"}
    assert all(0 <= figures["accuracy"] <= 1 for figures in after.metrics.values())
    card = (bundle / "README.md").read_text()
    assert "-1.000" not in card and f"{after.metrics['test']['accuracy']:.3f}" in card
    assert (bundle / "tfidf.safetensors").read_bytes() == tfidf_before  # --no-tfidf keeps the partner
    # A bundle folder that is not one: a clear error, not a traceback.
    missing = CliRunner().invoke(app, ["calibrate", "--model", str(tmp_path / "nowhere"), "--no-tfidf"])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_the_stages_are_fitted_in_order_each_on_the_walk_so_far():
    """``Calibration.fit`` walks ``STAGES``: the stack reads the pooled section, the map is fitted on it;
    what it stores reads back key for key, in order, and applies the same."""
    from patentclf.model.heads import HeadLayout

    rng = np.random.default_rng(6)
    layout = HeadLayout(classes=["A01", "G06", "H04"], subclasses=["A01B", "G06F", "H04N"])
    labels = rng.choice([0, 6, 7], 600)  # sections A, G and H; a code's index in the layout is labels // 3
    codes = [[f"{layout.subclasses[label // 3]} 1/00"] + (["H04N 5/00"] if rng.random() < 0.3 else []) for label in labels]
    truth = cal.Truth.from_split(list(labels), codes, layout)
    finer = np.array([label // 3 for label in labels])

    def noisy(columns, target, sharpness):
        return softmax(sharpness * np.eye(columns)[target] + rng.normal(0, 1, (len(target), columns)))

    raw = {
        "section": noisy(9, labels, 2.0),
        "sections": 1 / (1 + np.exp(-rng.normal(0, 1, (600, 9)))),
        "class": noisy(3, finer, 1.5),
        "subclass": noisy(3, finer, 1.5),
    }
    tfidf = {"section": noisy(9, labels, 1.0), "class": noisy(3, finer, 1.0), "subclass": noisy(3, finer, 1.0)}
    fitted = cal.Calibration.fit(raw, tfidf, truth, layout)
    assert [type(stage) for stage in fitted.stages()] == [kind for _, kind in cal.STAGES]
    pooled = fitted.pool.pooled(cal.section_sources(raw, tfidf["section"], layout))
    assert fitted.confidence_map == cal.ConfidenceMap.learn(pooled, labels)
    rows = [i for i, found in enumerate(truth.sections) if found]
    members = np.array([[code in truth.sections[i] for code in "ABCDEFGHY"] for i in rows])
    tables = cal.stack_tables(raw, pooled, tfidf, layout)
    assert fitted.stack == cal.SectionsStack.learn({k: v[rows] for k, v in tables.items()}, members, pooled.argmax(1)[rows])

    stored = fitted.to_dict()
    assert list(stored) == ["section", "class", "subclass", "sections_threshold", "sections_stack"]
    assert list(stored["section"]) == ["llm_weight", "temperature", "llm_temperature", "fitted_on", "weights", "confidence_map"]
    loaded = cal.Calibration.from_dict(stored, layout)
    assert loaded.to_dict() == stored and loaded.tfidf_heads() == {"section", "class", "subclass"}
    for key, table in fitted.apply(raw, tfidf).items():
        np.testing.assert_array_equal(loaded.apply(raw, tfidf)[key], table)
    # TF-IDF switched off: no pool, no stack, no map (it was fitted on the pooled section).
    alone = loaded.apply(raw, {})
    np.testing.assert_allclose(
        alone["section"], cal.blend(raw["section"], None, 1.0, fitted.heads.get("section").llm_temperature)
    )
    # Membership is at least the main-section probability (a patent belongs to its main section).
    assert (alone["sections"] == np.maximum(raw["sections"], alone["section"])).all() and (
        alone["sections_threshold"] == fitted.sections_threshold.threshold
    ).all()
    # The class and subclass tables agree with the section (the chain rule, hierarchy.top_down).
    answer = fitted.apply(raw, tfidf)
    for column, code in enumerate(layout.classes):
        assert (answer["class"][:, column] <= answer["section"][:, "ABCDEFGHY".index(code[0])] + 1e-12).all()
        assert (answer["subclass"][:, column] <= answer["class"][:, column] + 1e-12).all()  # one subclass a class here


def test_only_the_tfidf_heads_a_calibration_reads_are_asked_for():
    """A stack that reads the TF-IDF partner's section only does not ask for its class and subclass
    models (each costs a pass over the texts)."""
    stack = cal.SectionsStack(["sections", "section", "tfidf"], [1.0, 1.0, 1.0], 0.0, 0.5)
    calibration = cal.Calibration(pool=cal.SectionPool({"llm": 0.5, "tfidf": 0.5}), stack=stack)
    assert calibration.tfidf_heads() == {"section"}
