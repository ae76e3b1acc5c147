"""Model cards: the bundle's and the merged export's ``README.md``, each a template in
``resources/cards/`` filled from the bundle's ``patentclf.json``."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from string import Template

from patentclf.corpus.labels import SECTIONS
from patentclf.model.bundle import BundleInfo


def render(name: str, **fields) -> str:
    """Fill ``resources/cards/<name>.md`` (``$field`` placeholders; a missing one is an error)."""
    text = (resources.files("patentclf") / "resources" / "cards" / f"{name}.md").read_text()
    return Template(text).substitute(fields)


def metrics_rows(metrics: dict, baselines: dict | None = None) -> str:
    """Markdown rows ``| split | n | accuracy | macro-F1 | ECE | TF-IDF accuracy | TF-IDF macro-F1 |``."""
    baselines = baselines or {}
    rows = []
    for name, m in metrics.items():
        if not m:
            rows.append(f"| {name} | - | - | - | - | - | - |")
            continue
        base = baselines.get(name, {})
        cells = [
            name,
            str(m["n"]),
            f"{m['accuracy']:.3f}",
            f"{m['macro_f1']:.3f}",
            f"{m['ece']:.3f}" if "ece" in m else "-",
            f"{base['accuracy']:.3f}" if base else "-",
            f"{base['macro_f1']:.3f}" if base else "-",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) or "| (not evaluated) | | | | | | |"


HIERARCHY_FIGURES = (
    ("top_section_in_sections", "top section is one of the patent's sections"),
    ("sections_micro_f1", "micro-F1 of the predicted section set"),
    ("class_top1", "main class top-1"),
    ("class_top5", "main class in the top 5"),
    ("subclass_top1", "main subclass top-1"),
    ("subclass_top5", "main subclass in the top 5"),
    ("subclass_any_top5", "any of the patent's subclasses in the top 5"),
)


def hierarchy_table(metrics: dict, baselines: dict | None = None) -> str:
    """The hierarchy figures on the test split beside the TF-IDF baseline, as a Markdown table
    (empty when the bundle has none)."""
    test, base = metrics.get("test") or {}, (baselines or {}).get("test") or {}
    rows = []
    for key, label in HIERARCHY_FIGURES:
        if key in test:
            theirs = f"{base[key]:.3f}" if key in base else "-"
            rows.append(f"| {label} | {test[key]:.3f} | {theirs} |")
    if not rows:
        return ""
    return (
        "Hierarchy, test split (against each patent's own IPC codes):\n\n| figure | model | TF-IDF |\n|---|---|---|\n"
        + "\n".join(rows)
    )


TRUST_LEVELS = (
    ("section", "accuracy", None, "ece"),
    ("class", "class_top1", "class_top5", "class_ece"),
    ("subclass", "subclass_top1", "subclass_top5", "subclass_ece"),
    ("main group", "group_top1", "group_top5", "group_ece"),
)


def trust_table(metrics: dict) -> str:
    """Each level's top-1 / top-5 accuracy and ECE of its best code on the test split (one distribution:
    ``inference/hierarchy.py``), as a Markdown table (empty when the bundle has no finer levels)."""
    test = metrics.get("test") or {}
    if "class_top1" not in test:
        return ""
    rows = []
    for level, top1, top5, ece in TRUST_LEVELS:
        if top1 in test:
            cells = [f"{test[top1]:.3f}", f"{test[top5]:.3f}" if top5 and top5 in test else "-"]
            cells.append(f"{test[ece]:.3f}" if ece in test else "-")
            rows.append(f"| {level} | " + " | ".join(cells) + " |")
    return (
        "Each level, test split (the levels are one distribution: a code is never more probable than its parent; "
        "ECE of the level's best code against the patent's main code, 15 bins):\n\n"
        "| level | top-1 | top-5 | ECE |\n|---|---|---|---|\n" + "\n".join(rows)
    )


def review_text(calibration: dict) -> str:
    """What ``needs_review`` does, as measured when the review rules were fitted (empty when not measured)."""
    figures = (calibration.get("review") or {}).get("figures") or {}
    patents, others = figures.get("patents"), figures.get("non_patent_texts")
    if not patents or not others:
        return ""
    return (
        f"`needs_review` (with its reasons: too short, not English, not patent-like, uncertain) is set on "
        f"{patents['flagged']:.1%} of the {patents['rows']} test patents, whose answers are wrong "
        f"{patents['error_flagged']:.0%} of the time against {patents['error_unflagged']:.0%} for the others "
        f"({patents['errors_caught']:.0%} of all wrong answers flagged), and on {others['flagged']:.1%} of "
        f"{others['rows']} non-patent texts never fitted on (`resources/non-patent-texts`, measure part)."
        + (
            f" Of {forms['rows']} patent claims and description paragraphs never fitted on (`resources/patent-forms`, "
            f"measure part), {forms['by_reason'].get('not_patent_like', 0.0):.1%} are taken for not patent-like "
            f"and {forms['flagged']:.1%} are flagged in all."
            if (forms := figures.get("patent_forms"))
            else ""
        )
    )


def labels_line() -> str:
    """The label table in one line, for model cards."""
    return ", ".join(f"{s.id} {s.code} {s.name}" for s in SECTIONS)


GROUP_FIGURES = (
    ("group_top1", "main group top-1"),
    ("group_top5", "main group in the top 5"),
    ("group_any_top5", "any of the patent's main groups in the top 5"),
)


def index_section(index: dict, index_bytes: int) -> str:
    """The card's part on the bundle's patent index, from its ``index.json`` (empty without one)."""
    if not index:
        return ""
    lines = [
        "",
        "## Patent index (`index/`)",
        "",
        f"{index.get('count', 0):,} classified patents' representations (the hidden state the heads read), for the",
        "main groups and the nearest patents shown as evidence: a faiss "
        f"`{index.get('factory')}` index ({index_bytes / 2**20:.1f} MiB) plus",
        "`patents.jsonl` (ids, titles and codes).",
        "",
    ]
    for step in index.get("history", []):
        machine = f", {step['machine']}" if step.get("machine") else ""
        lines.append(
            f"- {step.get('action')} on {step.get('date')} from `{step.get('input')}`: {step.get('patents', 0):,} "
            f"patents ({step.get('engine')} engine, {step.get('seconds', 0):,} s{machine})"
        )
    voting = index.get("voting", {})
    settings = ", ".join(
        f"{key} {voting[key]}" for key in ("k", "power", "other_weight", "prior", "class_mix", "subclass_mix") if key in voting
    )
    if voting.get("fitted_on"):
        lines.append(f"- group voting ({settings}) fitted on {voting['fitted_on']:,} validation rows")
    elif settings:
        lines.append(f"- group voting ({settings}): the bundle's settings, not fitted to this index")
    test, tfidf = voting.get("test_figures"), voting.get("tfidf_neighbours", {}).get("test")
    if voting.get("figures") and test:
        lines += [
            "",
            "| | validation | test | TF-IDF neighbours, test |",
            "|---|---|---|---|",
        ]
        for key, name in GROUP_FIGURES:
            baseline = f"{tfidf[key]:.3f}" if tfidf and key in tfidf else "-"
            lines.append(f"| {name} | {voting['figures'][key]:.3f} | {test[key]:.3f} | {baseline} |")
    return "\n".join(lines) + "\n"


def calibration_text(calibration) -> str:
    """What the bundle's calibration (an ``inference.calibration.Calibration``) does, in a sentence or three."""
    from patentclf.inference.calibration import ORDER_MIX

    section = calibration.heads.blends.get("section")
    if section is None:
        return "Probabilities are the model's own softmax (not calibrated)."
    threshold = calibration.sections_threshold.threshold if calibration.sections_threshold else None
    if not calibration.pool:
        return (
            f"Section probabilities are a log-linear blend of the LLM ({section.llm_weight:.2f}) and a TF-IDF + "
            f"logistic regression model trained on the same rows ({1 - section.llm_weight:.2f}), divided by a "
            f"temperature of {section.temperature:.2f}; weights, temperatures and the sections threshold "
            f"({'-' if threshold is None else threshold}) were fitted on the validation split."
        )
    bins = len(calibration.confidence_map.confidence) if calibration.confidence_map else 0
    if calibration.stack:
        threshold = calibration.stack.threshold
    return (
        "Section probabilities pool, log-linearly, the LLM's section head, a TF-IDF + logistic regression model "
        "trained on the same rows, and the LLM's class and subclass heads summed up to sections, with weights "
        + ", ".join(f"{name} {weight:.2f}" for name, weight in calibration.pool.weights.items())
        + f"; the predicted section's probability is then read through a confidence map ({bins} equal-count bins, "
        f"isotonic, with {ORDER_MIX:.0%} of the raw value mixed in so that confidences keep their order), so it "
        "matches how often such answers are right. The sections come from a logistic regression over every head's "
        f"view of each section (threshold {'-' if threshold is None else threshold}); class and subclass "
        "probabilities blend the LLM with TF-IDF and a temperature. All of these were fitted on the validation split."
    )


def bundle_card(info: BundleInfo, index: dict | None = None, index_bytes: int = 0) -> str:
    """``index``: the bundle's ``index/index.json`` and ``index_bytes`` its faiss file's size, if it has one."""
    from patentclf.inference.calibration import Calibration  # numpy: not needed to read a bundle's info
    from patentclf.model.heads import HeadLayout

    # The training log stays in patentclf.json; the card lists the settings that reproduce the run.
    hyper = info.training.model_dump(mode="json", exclude={"log_history", "resumed_from"}) if info.training else {}
    commands = [info.command or "(unknown)"]
    previous = info.training.resumed_from if info.training else None
    while previous:  # a continued run: its earlier runs' commands come first
        commands.insert(0, f"{previous.command}   # then continued by:")
        previous = previous.training.resumed_from if previous.training else None
    heads = info.heads
    heads_text = (
        f"Besides the main section it answers every section the patent belongs to (multi-label), and the top 5 main CPC "
        f"classes ({len(heads.classes)} known) and subclasses ({len(heads.subclasses)} known)."
        if heads
        else "It answers the main section only."
    )
    return render(
        "bundle",
        base_model=info.base_model,
        base_model_weights=info.base_model_weights or info.base_model,
        heads_text=heads_text,
        max_length=info.max_length,
        calibration_text=calibration_text(Calibration.from_dict(info.calibration, HeadLayout.from_info(info))),
        metrics_rows=metrics_rows(info.metrics, info.baselines),
        hierarchy_table="\n\n".join(
            part
            for part in (hierarchy_table(info.metrics, info.baselines), trust_table(info.metrics), review_text(info.calibration))
            if part
        ),
        data=json.dumps({name: split.model_dump(mode="json") for name, split in info.data.items()}),
        hyperparameters=json.dumps(hyper),
        versions=json.dumps(info.versions),
        commands="\n".join(commands),
        index_section=index_section(index or {}, index_bytes),
    )


def export_card(info: BundleInfo, dtype: str) -> str:
    from patentclf.model.heads import HeadLayout
    from patentclf.model.windows import chunk_overlap

    rule = (
        "**Normalise the text before tokenizing, as the model was trained on it**: lowercase it and put\n"
        "spaces around punctuation (BIGPATENT's form), exactly as `patentclf.corpus.data.to_bigpatent_form` does:\n\n"
        "```python\nfrom patentclf.corpus.data import to_bigpatent_form\ntext = to_bigpatent_form(text)  "
        '# "Primary-treated sewage (10.5%)." -> "primary - treated sewage ( 10.5 % ) ."\n```\n\n'
        "A server that skips this step still runs but is less accurate on mixed-case text."
        if info.normalized
        else "The text is tokenized as it is (no normalisation)."
    )
    layout = HeadLayout.from_info(info)
    outputs = (
        "The logits are the model's own: the first nine are the main section (softmax them); then nine "
        f"independent section logits (sigmoid), {len(layout.classes)} main classes and {len(layout.subclasses)} main "
        "subclasses (softmax each group), named in `config.id2label`."
        if layout.hierarchical
        else "Nine logits, one per section (softmax them)."
    ) + (
        " patentclf blends them with a TF-IDF model and a temperature (`tfidf.*` and `calibration` in the bundle);"
        " this export is the LLM alone, so its probabilities are a little less accurate and less calibrated."
        if info.calibration
        else ""
    )
    return render(
        "export",
        base_model=info.base_model,
        dtype=dtype,
        labels_line=labels_line(),
        normalisation_rule=rule,
        max_length=info.max_length,
        overlap=chunk_overlap(info.max_length),
        outputs=outputs,
        metrics_rows=metrics_rows(info.metrics, info.baselines),
    )


def write_model_card(bundle_dir: str | Path, info: BundleInfo) -> None:
    (Path(bundle_dir) / "README.md").write_text(render_model_card(bundle_dir, info))


def render_model_card(bundle_dir: str | Path, info: BundleInfo) -> str:
    """The card of the bundle at ``bundle_dir``: its info and, if it carries one, its patent index."""
    from patentclf.inference.index import BUNDLE_INDEX_DIR, INDEX_FILE, read_index_info

    index_dir = Path(bundle_dir) / BUNDLE_INDEX_DIR
    index = read_index_info(index_dir)
    if index is None:
        return bundle_card(info)
    return bundle_card(info, index, (index_dir / INDEX_FILE).stat().st_size)
