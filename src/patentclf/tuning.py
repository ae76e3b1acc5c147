"""After training: fit a bundle's TF-IDF partner, blend weights, temperatures and the sections
threshold on the validation split, and store them in the bundle.

The LLM's weights are not touched; everything fitted here is a few numbers in ``patentclf.json``
plus the TF-IDF model files (see ``ensemble.py``), so it can be redone on any bundle
(``patentclf calibrate``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import calibration as cal
from .bundle import read_info, write_info
from .data import Split
from .ensemble import fit_tfidf
from .heads import HeadLayout
from .hierarchy import targets
from .labels import CODES


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


def tune_bundle(bundle_dir: str | Path, train: Split, validation: Split, *, tfidf: bool = True, progress: bool = False) -> dict:
    """Fit and store the TF-IDF partner (``tfidf``), then the blend weight and temperature of each
    softmax head and the sections threshold, all on ``validation``. Returns the calibration dict."""
    from .classifier import Classifier

    bundle_dir = Path(bundle_dir)
    info = read_info(bundle_dir)
    layout = HeadLayout.from_info(info)
    if tfidf:
        fit_tfidf(train.texts, tfidf_targets(train, layout)).save(bundle_dir)
    classifier = Classifier.load(bundle_dir)
    raw = classifier.raw_outputs(validation.texts)
    found = [targets(codes) for codes in validation.codes]
    calibration: dict = {}
    heads = {"section": (list(CODES), list(validation.labels))}
    if layout.hierarchical:
        class_index = {c: i for i, c in enumerate(layout.classes)}
        subclass_index = {c: i for i, c in enumerate(layout.subclasses)}
        heads["class"] = (layout.classes, [class_index.get(t.main_class) if t else None for t in found])
        heads["subclass"] = (layout.subclasses, [subclass_index.get(t.main_subclass) if t else None for t in found])
    for head, (codes, labels) in heads.items():
        rows = np.array([i for i, label in enumerate(labels) if label is not None])
        if len(rows) == 0:
            continue
        truth = np.array([labels[i] for i in rows])
        llm = raw[head][rows]
        partner = classifier.tfidf_probabilities([validation.texts[i] for i in rows], head, codes)
        weight, temperature = cal.fit_blend(llm, partner, truth)
        calibration[head] = {
            "llm_weight": weight,
            "temperature": temperature,
            "llm_temperature": cal.fit_temperature(llm, None, truth, 1.0),
            "fitted_on": f"validation ({len(rows)} rows)",
        }
        if head != "section":
            continue
        # Every row has a section: the main predictions the sections threshold is fitted with.
        uses_partner = partner is not None and weight < 1.0
        main_section = cal.blend(llm, partner if uses_partner else None, weight if uses_partner else 1.0, 1.0).argmax(axis=1)
        if layout.hierarchical and partner is not None:
            # Pool the section head with the class and subclass heads summed up to sections (and TF-IDF).
            sources = classifier.section_sources({name: values[rows] for name, values in raw.items()}, partner)
            weights = cal.fit_combination(list(sources.values()), truth)
            calibration[head]["weights"] = dict(zip(sources, weights))
            main_section = cal.combine(list(sources.values()), weights).argmax(axis=1)
    # The next fits read the classifier's own calibrated outputs, so serving computes what was fitted.
    # Neither the stack nor the map exists yet, so this section is the pooled one: what the stack reads,
    # and (the stack leaves the section alone) what the map is fitted on.
    classifier.calibration = calibration
    pooled = classifier.calibrated(raw, validation.texts)
    if layout.hierarchical:
        rows = np.array([i for i, t in enumerate(found) if t is not None])
        if len(rows):
            main = main_section[rows]
            truth = np.array([[code in found[i].sections for code in CODES] for i in rows])
            calibration["sections_threshold"] = cal.fit_threshold(raw["sections"][rows], truth, main)
            if "weights" in calibration["section"]:
                tfidf_tables = {
                    head: classifier.tfidf_probabilities(validation.texts, head, codes)
                    for head, codes in (("section", list(CODES)), ("class", layout.classes), ("subclass", layout.subclasses))
                }
                tables = classifier.stack_tables(raw, pooled, tfidf_tables)
                stack = cal.fit_sections_stack({name: table[rows] for name, table in tables.items()}, truth, main)
                calibration["sections_stack"] = {**stack, "fitted_on": f"validation ({len(rows)} rows)"}
    calibration["section"]["confidence_map"] = cal.fit_confidence_map(pooled["section"], np.array(validation.labels))
    info["calibration"] = calibration
    write_info(bundle_dir, info)
    return calibration
