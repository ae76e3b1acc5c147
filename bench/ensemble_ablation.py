"""What each part of the shipped model's answer adds, on the same test rows (and the same rows cut to
200 characters): for the section, the LLM alone, with its temperature, TF-IDF alone, the two-way
blend, the pool with the finer heads, and the pool read through the confidence map (shipped); for
the section set, the multi-label head at its threshold against the sections stack (shipped); for
class and subclass, each model and their blend. Also the time the post-processing takes beside the
LLM's own time for the same rows.

    .venv/bin/python bench/ensemble_ablation.py                 # the shipped model
    .venv/bin/python bench/ensemble_ablation.py --model DIR

Needs a bundle with a TF-IDF partner and calibration (``patentclf calibrate``). The LLM runs once per
text form; every row of the table is computed from the same model outputs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    from dataclasses import replace

    import numpy as np

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.corpus.hierarchy import targets
    from patentclf.corpus.labels import CODES
    from patentclf.inference.calibration import blend, section_sets, section_sources
    from patentclf.inference.classifier import Classifier
    from patentclf.model.bundle import default_model_dir
    from patentclf.training.evaluation import compute_metrics, expected_calibration_error, short_text_form

    classifier = Classifier.load(args.model or default_model_dir())
    rows = stratified_subset(load_split("bundled", args.split), args.limit)
    labels = np.asarray(rows.labels)
    calibration = classifier.calibration
    print(f"machine: {machine()}")
    print(f"model: {classifier.path} ({classifier.info.base_model}); {len(rows)} rows of bundled:{args.split}")
    for form, texts in (
        ("as published", rows.texts),
        ("first 200 characters, BIGPATENT form", [short_text_form(t) for t in rows.texts]),
    ):
        started = time.perf_counter()
        raw = classifier.raw_outputs(texts)
        llm_seconds = time.perf_counter() - started
        started = time.perf_counter()
        shipped = classifier.calibrated(raw, texts)
        post_seconds = time.perf_counter() - started
        # The same without the confidence map and the sections stack: what those two cost.
        classifier.calibration = replace(calibration, stack=None, confidence_map=None)
        started = time.perf_counter()
        classifier.calibrated(raw, texts)
        older_seconds = time.perf_counter() - started
        classifier.calibration = calibration
        partners = classifier.tfidf_outputs(texts)
        tfidf = partners["section"]
        section = calibration.heads.get("section")
        variants = {
            "LLM alone, raw softmax": raw["section"],
            "LLM alone, temperature": blend(raw["section"], None, 1.0, section.llm_temperature),
            "TF-IDF alone": tfidf,
            "LLM + TF-IDF blend, temperature": section.apply(raw["section"], tfidf),
        }
        if calibration.pool:
            variants["pooled with the class / subclass heads"] = calibration.pool.pooled(
                section_sources(raw, tfidf, classifier.layout)
            )
        variants["shipped (the above read through the confidence map)"] = shipped["section"]
        out = []
        for name, probs in variants.items():
            predicted = probs.argmax(axis=1)
            metrics = compute_metrics(labels, predicted)
            ece = expected_calibration_error(probs.max(axis=1), (predicted == labels).astype(float))
            out.append([name, f"{metrics['accuracy']:.3f}", f"{metrics['macro_f1']:.3f}", f"{ece:.3f}"])
        print(f"\nsection, {form}")
        print(table(["answer", "accuracy", "macro-F1", "ECE"], out))
        print(
            f"time for {len(texts)} rows: the LLM {llm_seconds:.1f} s, everything after it (TF-IDF, pool, map, stack) "
            f"{post_seconds:.2f} s ({post_seconds / llm_seconds:.1%} of the LLM's); without the map and the stack "
            f"{older_seconds:.2f} s"
        )
        if "sections" in raw and calibration.stack:
            found_rows = [i for i, t in enumerate(targets(c) for c in rows.codes) if t]
            truth = np.array([[code in targets(rows.codes[i]).sections for code in CODES] for i in found_rows])
            main = shipped["section"].argmax(axis=1)[found_rows]
            out = []
            for name, probs, threshold in (
                ("multi-label head, its threshold", raw["sections"], calibration.sections_threshold.threshold),
                ("sections stack (shipped)", shipped["sections"], calibration.stack.threshold),
            ):
                chosen = section_sets(probs[found_rows], main, threshold)
                f1 = 2 * (chosen & truth).sum() / (chosen.sum() + truth.sum())
                out.append([name, f"{threshold:.3f}", f"{f1:.3f}", f"{chosen.sum(axis=1).mean():.2f}"])
            print(table(["section set", "threshold", "micro-F1", "sections per patent"], out))
        found = [targets(c) for c in rows.codes]
        if classifier.layout.hierarchical:
            out = []
            for head, codes, main in (
                ("class", classifier.layout.classes, "main_class"),
                ("subclass", classifier.layout.subclasses, "main_subclass"),
            ):
                partner = partners[head]
                for name, probs in (
                    ("LLM alone", raw[head]),
                    ("TF-IDF alone", partner),
                    ("blend (shipped)", calibration.heads.get(head).apply(raw[head], partner)),
                ):
                    if probs is None:
                        continue
                    top = np.argsort(-probs, axis=1)[:, :5]
                    hits = [[codes[j] for j in row] for row in top]
                    top1 = np.mean([getattr(t, main) == h[0] for t, h in zip(found, hits) if t])
                    top5 = np.mean([getattr(t, main) in h for t, h in zip(found, hits) if t])
                    out.append([head, name, f"{top1:.3f}", f"{top5:.3f}"])
            print(table(["level", "answer", "top-1", "top-5"], out))


if __name__ == "__main__":
    main()
