"""Evaluate a bundle beside its baselines: ``patentclf evaluate`` as a function for notebooks and services.

:func:`evaluation_rows` reads the rows to measure (in a text form), :func:`evaluate_bundle` predicts them
and measures the model, the TF-IDF + logistic regression baseline and, where the rows carry main
groups, the TF-IDF neighbours' groups, all on the same rows. A baseline that cannot be had (the
bundle does not say what it trained on, or those rows cannot be read) is skipped, and the result says
why; training rows named explicitly (``baseline_data``) that cannot be read are an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from patentclf.corpus.data import DataError, Split, load_split, stratified_subset, to_bigpatent_form
from patentclf.inference.groups import group_figures
from patentclf.training.evaluation import (
    NEIGHBOUR_BASELINE,
    baseline_metrics,
    evaluate_predictions,
    fit_baseline,
    short_text_form,
    tfidf_neighbour_groups,
)

TextForm = Literal["original", "bigpatent", "short"]
TEXT_FORMS: dict[str, Callable[[str], str]] = {
    "original": lambda text: text,
    "bigpatent": to_bigpatent_form,  # lowercase, spaced punctuation
    "short": short_text_form,  # the first 200 characters, in BIGPATENT form
}
SECTION_BASELINE = "TF-IDF (1-2 grams) + logistic regression"


@dataclass
class Evaluation:
    metrics: dict  # what metrics.json holds: the model's figures, the run's facts and "baseline"
    skipped: list[str] = field(default_factory=list)  # baselines left out, and why (one line each)

    @property
    def baseline(self) -> dict | None:
        return self.metrics.get("baseline")


def evaluation_rows(
    data: str,
    split: str = "test",
    *,
    data_config: str = "abstract",
    text_fields: tuple[str, ...] | None = None,
    text_form: TextForm = "original",
    limit: int | None = None,
) -> Split:
    """The labelled rows of ``split`` in ``data`` (a seeded, stratified ``limit`` of them), in ``text_form``."""
    if text_form not in TEXT_FORMS:
        raise ValueError(f"text form must be {', '.join(TEXT_FORMS)}, not {text_form!r}")
    rows = load_split(data, split, data_config=data_config, text_fields=text_fields or None)
    rows.texts = [TEXT_FORMS[text_form](t) for t in rows.texts]
    return stratified_subset(rows, limit)


def evaluate_bundle(
    classifier,
    rows: Split,
    *,
    split: str = "test",
    text_form: TextForm = "original",
    long_text: str = "truncate",
    batch_size: int | None = None,
    baseline: bool = True,
    baseline_data: str | None = None,
    data_config: str = "abstract",
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """The classifier's figures on ``rows`` (read by :func:`evaluation_rows` with ``split`` and
    ``text_form``, recorded here) and, with ``baseline``, the baselines' on the same rows: the
    bundle's TF-IDF partner where it was fitted on the baseline's training data, else a TF-IDF model
    fitted on the train split of ``baseline_data`` (default: the data the bundle trained on)."""
    predictions = classifier.predict(rows.texts, batch_size=batch_size, long_text=long_text, progress=progress)
    metrics = evaluate_predictions(rows.labels, rows.codes, predictions, rows.groups)
    metrics.update(
        {
            "model": str(classifier.path),
            "model_version": classifier.version,
            "data": rows.source,
            "split": split,
            "text_form": text_form,
            "long_text": long_text,
        }
    )
    result = Evaluation(metrics)
    if baseline:
        _add_baselines(result, classifier, rows, baseline_data, data_config)
    return result


def _add_baselines(result: Evaluation, classifier, rows: Split, baseline_data: str | None, data_config: str) -> None:
    trained_on = classifier.info.training.data if classifier.info.training else None
    # The bundle's TF-IDF partner is the section baseline, fitted on the model's own training rows.
    partner = classifier.tfidf is not None and baseline_data in (None, trained_on)
    train_rows, why_not = None, ""
    if not partner or "groups" in result.metrics:
        train_rows, why_not = _training_rows(baseline_data or trained_on, data_config, named=bool(baseline_data))
    if partner:
        models, source = classifier.tfidf, f"{trained_on} (the bundle's TF-IDF partner)"
    elif train_rows is not None:
        models, source = fit_baseline(train_rows), train_rows.source
    else:
        models, source = None, None
        result.skipped.append(f"no TF-IDF baseline: {why_not}")
    if models is not None:
        result.metrics["baseline"] = {"model": SECTION_BASELINE, "trained_on": source, **baseline_metrics(models, rows)}
    if "groups" not in result.metrics:
        return
    if train_rows is not None and not any(train_rows.groups):
        why_not = f"the training rows ({train_rows.source}) carry no main groups; pass --baseline-data"
    if train_rows is None or why_not:
        result.skipped.append(f"no main-group baseline: {why_not}")
        return
    suggested = tfidf_neighbour_groups(train_rows.texts, train_rows.groups, rows.texts)
    figures = result.metrics.setdefault("baseline", {})
    figures["groups"] = group_figures(suggested, rows.groups)
    figures["groups_model"] = f"TF-IDF (1-2 grams) nearest neighbours voting their groups ({NEIGHBOUR_BASELINE})"


def _training_rows(spec: str | None, data_config: str, *, named: bool) -> tuple[Split | None, str]:
    """The train split of ``spec``, or None and why not. Rows the caller named (``named``) that
    cannot be read are an error; the bundle's own, which may live on another machine, are skipped."""
    if not spec:
        return None, "the bundle does not say what it trained on; pass --baseline-data"
    try:
        return load_split(spec, "train", data_config=data_config), ""
    except DataError as exc:
        if named:
            raise
        return None, f"its training rows cannot be read here ({exc}); pass --baseline-data"
