"""The Classify page: one patent (with "Is this right?" feedback) or a whole file in batch mode."""

from __future__ import annotations

import re
from html import escape

import altair as alt
import pandas as pd
import streamlit as st

from patentclf.corpus.data import DataError
from patentclf.corpus.hierarchy import CodeError, canonical_code
from patentclf.corpus.labels import CODES, SECTIONS, section
from patentclf.corpus.links import cpc_url
from patentclf.inference.options import DEFAULT_OPTIONS, DEPTHS, MAX_SUGGESTIONS
from patentclf.ui.batch import (
    ANSWER_COLUMNS,
    UPLOAD_TYPES,
    read_upload,
    results_table,
    table_has_hierarchy,
    tag_cell,
    to_csv,
    to_jsonl,
)
from patentclf.ui.client import ApiClient, ApiError
from patentclf.ui.common import get_client, show_api_status
from patentclf.ui.examples import EXAMPLES
from patentclf.ui.tables import code_link, html_table, patent_link, title_cell

BATCH_CHUNK = 32  # texts per request: keeps each request short and under the API's batch limit
# Explained texts per request (the API takes up to max_explain_batch, 8 by default): each costs about a
# prediction per sentence, so a request of four long abstracts stays well within the UI's 60 s timeout.
EXPLAIN_CHUNK = 4
EXPLAIN_MAX_ROWS = 50  # the batch tab explains small files only: about a prediction per sentence of each text


def render() -> None:
    client = get_client()
    show_api_status(client)
    st.title("Patent classifier")
    st.caption(
        "Classifies a patent's title and abstract: its CPC sections, classes, subclasses and main groups, with the nearest classified patents as evidence."
    )
    single, batch = st.tabs(["One patent", "Batch (CSV / JSONL)"])
    with single:
        _single(client)
    with batch:
        _batch(client)


# -- one patent -----------------------------------------------------------------------------------


def _use_example() -> None:
    choice = st.session_state.get("example")
    if choice is not None:
        st.session_state["text"] = EXAMPLES[choice].text


def _single(client: ApiClient) -> None:
    st.selectbox(
        "Try a real patent",
        options=range(len(EXAMPLES)),
        index=None,
        placeholder="Pick an example from the test set…",
        format_func=lambda i: f"{EXAMPLES[i].number} · {EXAMPLES[i].title} (labelled {EXAMPLES[i].section})",
        key="example",
        on_change=_use_example,
    )
    st.text_area("Patent text (title and abstract)", key="text", height=200)
    _answer_options()
    st.checkbox(
        "Explain",
        key="opt_explain",
        help="Which sentences raised or lowered the section's, best subclass's and best main group's probability: "
        "the answer again with each sentence left out (takes about one prediction per sentence).",
    )
    if st.button("Classify", type="primary"):
        text = st.session_state.get("text", "").strip()
        st.session_state.pop("prediction", None)
        st.session_state.pop("feedback_ack", None)
        st.session_state.pop("explain_code", None)  # a new answer may explain fewer codes
        if not text:
            st.warning("Enter a patent's text first, or pick an example.")
        else:
            with st.spinner("Classifying…"):
                try:
                    st.session_state["prediction"] = client.predict(text, chosen_options(st.session_state))
                    st.session_state["prediction_text"] = text  # the explanation's spans are offsets into it
                except ApiError as exc:
                    st.error(exc.message)
    prediction = st.session_state.get("prediction")
    if prediction:
        show_prediction(prediction, st.session_state.get("prediction_text"))
        _feedback(client, prediction)


COUNT_OPTIONS = (("classes", "Classes"), ("subclasses", "Subclasses"), ("groups", "Main groups"), ("similar", "Similar patents"))


def _answer_options(prefix: str = "opt_") -> None:
    """The request's answer options (``PredictOptions``), under the text box; their defaults are the API's.
    ``prefix``: of the widgets' keys (each tab has its own)."""
    with st.expander("Options"):
        st.caption("How many suggestions per level (0: none), which to leave out, and how deep to answer.")
        columns = st.columns(len(COUNT_OPTIONS))
        for column, (name, label) in zip(columns, COUNT_OPTIONS):
            column.number_input(
                label, min_value=0, max_value=MAX_SUGGESTIONS, value=getattr(DEFAULT_OPTIONS, name), step=1, key=f"{prefix}{name}"
            )
        st.slider(
            "Leave out codes less probable than",
            min_value=0.0,
            max_value=1.0,
            value=DEFAULT_OPTIONS.threshold,
            step=0.01,
            key=f"{prefix}threshold",
        )
        st.checkbox("Set the sections threshold (default: the model's own)", key=f"{prefix}own_sections")
        if st.session_state.get(f"{prefix}own_sections"):
            st.slider(
                "A section joins the answer from", min_value=0.0, max_value=1.0, value=0.5, step=0.05, key=f"{prefix}sections"
            )
        st.radio(
            "Answer down to",
            DEPTHS,
            index=DEPTHS.index(DEFAULT_OPTIONS.depth),
            horizontal=True,
            key=f"{prefix}depth",
            help="section: the sections only, with no index search (faster)",
        )


def chosen_options(state, prefix: str = "opt_") -> dict:
    """The answer options set on the page (widgets keyed ``prefix`` + field) that differ from the
    defaults (empty: send none)."""
    chosen = {name: int(state[f"{prefix}{name}"]) for name, _ in COUNT_OPTIONS if f"{prefix}{name}" in state}
    if f"{prefix}threshold" in state:
        chosen["threshold"] = float(state[f"{prefix}threshold"])
    if state.get(f"{prefix}own_sections") and f"{prefix}sections" in state:
        chosen["sections_threshold"] = float(state[f"{prefix}sections"])
    if f"{prefix}depth" in state:
        chosen["depth"] = state[f"{prefix}depth"]
    if f"{prefix}explain" in state:
        chosen["explain"] = bool(state[f"{prefix}explain"])
    return {name: value for name, value in chosen.items() if value != getattr(DEFAULT_OPTIONS, name)}


def show_prediction(p: dict, text: str | None = None) -> None:
    """Draw one answer of ``POST /predict`` (the page is a function of that JSON alone, and of the
    ``text`` sent, whose sentences an explanation highlights)."""
    st.subheader(f"Section {p['label']} · {p['name']}")
    left, right = st.columns(2)
    left.metric("Predicted section", p["label"])
    right.metric(
        "Section confidence",
        f"{p['confidence']:.1%}",
        help="The probability that the patent's main section is this one. It is calibrated: of held-out patents "
        "answered with about this confidence, about this share were right (the table below says how many).",
    )
    reasons = [r.get("message") or r.get("reason", "") for r in p.get("review_reasons") or []]
    if p.get("needs_review"):
        said = "; ".join(reasons) if reasons else "it is marked for review"
        st.warning(f"**Check this answer:** {said[:1].upper()}{said[1:]}.")
    if p.get("evidence_disagrees"):
        st.warning(evidence_message(p))
    if p.get("truncated"):
        st.info("The text was longer than the model reads; only its beginning was used.")
    _show_levels(p)
    _show_tags(p)
    if p.get("explanation") and text is not None:
        _show_explanation(p["explanation"], text)
    _show_hierarchy(p)
    st.altair_chart(_probability_chart(p), width="stretch")
    st.caption(f"Served by {p.get('model_version', 'an unknown model')} · prediction id {p.get('id', '-')}")


def evidence_message(p: dict) -> str:
    """The nearest patents point elsewhere than the model. The flag weighs more neighbours than the
    answer shows (the service's voting), so the message names no section of its own: it counts the
    shown ones' sections and names the nearest shown one outside the answer's section."""
    similar = [item for item in p.get("similar") or [] if item.get("code")]
    counts: dict[str, int] = {}
    for item in similar:
        counts[item["code"][:1]] = counts.get(item["code"][:1], 0) + 1
    shown = ", ".join(f"{code} {n}" for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    nearest = next((item for item in similar if item["code"][:1] != p["label"]), None)
    parts = [
        f"**The nearest classified patents point elsewhere:** most of their votes (weighted by similarity) are for "
        f"another section than {p['label']}."
    ]
    if shown:
        parts.append(
            f"Of the {len(similar)} shown below: {shown}"
            + (f"; the nearest elsewhere is {nearest['id']}, {nearest['code']}." if nearest else ".")
        )
    parts.append("Compare the text with them.")
    return " ".join(parts)


LEVEL_NAMES = {"section": "Section", "class": "Class", "subclass": "Subclass", "group": "Main group"}


def levels_table(levels: list[dict]) -> str:
    """The best code of each level as a small HTML table: level, code (linked to the CPC scheme), title
    (whole on hover), probability, and the share of held-out answers at about that probability that
    were right."""
    rows = [
        [
            LEVEL_NAMES.get(item["level"], item["level"]),
            code_link(item["code"]),
            title_cell(item.get("title") or ""),
            f"{item['probability']:.1%}",
            "-" if item.get("right_share") is None else f"{item['right_share']:.0%}",
        ]
        for item in levels
    ]
    return html_table(["Level", "Code", "Title", "Probability", "Right at this probability"], rows, numbers=(3, 4))


def _show_levels(p: dict) -> None:
    """The answer at every level, one line each, with what each probability has meant."""
    if len(p.get("levels") or []) < 2:
        return
    st.markdown("#### The answer at each level")
    st.markdown(levels_table(p["levels"]), unsafe_allow_html=True)
    st.caption(
        "One distribution: a class is never more probable than its section, a subclass than its class, a main group "
        "than its subclass. 'Right at this probability': of the held-out (validation) patents answered at that level "
        "with about that probability, the share whose main code it was."
    )


def tags_table(tags: list[dict]) -> str:
    """The answer's own tags (from the live tag sets) as a small HTML table: set, tag, probability."""
    rows = [[escape(item["set"]), escape(item["name"]), f"{item['probability']:.1%}"] for item in tags]
    return html_table(["Tag set", "Tag", "Probability"], rows, numbers=(2,))


def _show_tags(p: dict) -> None:
    """The user's own tags, where the service answers with tag sets (an answer without the field: none live)."""
    if "tags" not in p:
        return
    st.markdown("#### Your tags")
    if p["tags"]:
        st.markdown(tags_table(p["tags"]), unsafe_allow_html=True)
        st.caption("Each tag's own probability (tags need not sum to 1), shown where it reaches the tag's threshold.")
    else:
        st.caption("No tag of the live tag sets reaches its threshold for this patent.")


EFFECT_COLOURS = {"raises": "46, 160, 67", "lowers": "228, 87, 46"}  # green raises, orange-red lowers (RGB)


def explanation_html(text: str, explanation: dict, which: int = 0) -> str:
    """``text`` with each explained sentence highlighted by what it did to the ``which``-th explained
    code: green where it raised the probability, red where it lowered it, the stronger the colour the
    larger the effect (against the largest); the effect beside it, and in words on hover."""
    code = explanation["codes"][which]
    largest = max((abs(e) for e in code["effects"]), default=0.0) or 1.0
    name = code["code"]
    parts, at = [], 0
    for span, effect in zip(explanation["sentences"], code["effects"]):
        parts.append(_plain(text[at : span["start"]]))
        shown = round(effect, 3)  # an effect shown as +0.000 is no effect: no colour
        kind = "raises" if shown > 0 else "lowers" if shown < 0 else "none"
        if kind == "none":
            style, tip = "", f"no effect on {name}'s probability"
        else:
            strength = 0.12 + 0.55 * abs(effect) / largest
            style = f"background: rgba({EFFECT_COLOURS[kind]}, {strength:.2f}); border-radius: 3px; padding: 0 2px;"
            tip = (
                f"{'raised' if effect > 0 else 'lowered'} {name}'s probability by {abs(effect):.3f} "
                f"({code['probability']:.3f} with the whole text, {code['probability'] - effect:.3f} without this sentence)"
            )
        parts.append(
            f'<span class="explained {kind}" title="{escape(tip)}" style="{style}">{_plain(text[span["start"] : span["end"]])}'
            f" <small><b>{effect:+.3f}</b></small></span>"
        )
        at = span["end"]
    parts.append(_plain(text[at:]))
    return f'<div class="explanation" style="line-height: 1.9;">{"".join(parts)}</div>'


def _plain(text: str) -> str:
    """Text as HTML inside a Markdown block: escaped, line breaks as <br> (a blank line would end the
    HTML block, and Markdown would read the rest)."""
    return escape(text).replace("\n", "<br>")


def _show_explanation(explanation: dict, text: str) -> None:
    """The text with its sentences highlighted by what they did to one explained code (chosen above it)."""
    st.markdown("#### Which sentences made the answer")
    codes = explanation.get("codes") or []
    if not codes:
        st.caption("The text is one sentence: there is nothing to leave out, so nothing to compare.")
        return
    which = st.radio(
        "Explain",
        range(len(codes)),
        format_func=lambda i: f"{LEVEL_NAMES.get(codes[i]['level'], codes[i]['level'])} {codes[i]['code']}",
        horizontal=True,
        key="explain_code",
        label_visibility="collapsed",
    )
    st.markdown(explanation_html(text, explanation, which), unsafe_allow_html=True)
    st.caption(
        "Green: the sentence raised the code's probability; red: it lowered it (the stronger, the more). Beside each "
        "sentence, and on hover: its probability with the whole text minus without that sentence."
    )
    if explanation.get("capped"):
        st.info(
            f"Only the first {len(explanation['sentences'])} of the text's {explanation['sentence_count']} sentences are explained."
        )


def has_hierarchy(p: dict) -> bool:
    """The answer says more than a section-only model's (its one section, no classes or subclasses)."""
    return bool(p.get("classes") or p.get("subclasses")) or any(code != p["label"] for code in p.get("sections") or [])


def _show_hierarchy(p: dict) -> None:
    """Every section the patent belongs to, then the class and subclass suggestions; nothing for a
    section-only model (its answer would only repeat the headline). Codes link to the CPC scheme."""
    if not has_hierarchy(p):
        return
    suggestions = bool(p.get("classes") or p.get("subclasses"))
    levels = ", classes, subclasses and main groups" if p.get("groups") else ", classes and subclasses"
    st.markdown("#### CPC sections" + (levels if suggestions else ""))
    st.markdown("Belongs to " + " ".join(section_badges(p)))
    st.caption(
        "A patent can belong to several sections; each one's probability is judged on its own. Codes link to the CPC scheme."
    )
    for key, level in (("classes", "Class"), ("subclasses", "Subclass"), ("groups", "Main group")):
        if p.get(key):
            st.markdown(suggestion_table(p[key], level), unsafe_allow_html=True)
    if p.get("groups"):
        st.caption(
            "A main group's probability is its subclass's times the share of the nearest patents' votes it has in that subclass."
        )
    _show_similar(p)


def section_badges(p: dict) -> list[str]:
    """A badge for each section the patent belongs to (the predicted one orange), each a Markdown link
    to the section in the CPC scheme."""
    probabilities = p.get("section_probabilities") or {}
    badges = []
    for code in p.get("sections") or []:
        badge = f":{'orange' if code == p['label'] else 'blue'}-badge[{code} · {section(code).name} · {probabilities.get(code, 0.0):.0%}]"
        url = cpc_url(code)
        badges.append(f"[{badge}]({url})" if url else badge)
    return badges


def _show_similar(p: dict) -> None:
    """The nearest classified patents: the evidence a reviewer checks the suggestions against."""
    if not p.get("similar"):
        return
    st.markdown("#### Nearest classified patents")
    st.markdown(similar_table(p["similar"]), unsafe_allow_html=True)


SIMILAR_CODES_CHARS = 80  # a patent may list dozens of codes: the first ones, the rest on hover


def similar_table(items: list[dict]) -> str:
    """The nearest indexed patents as a small HTML table: id (linked to Google Patents), title (whole on
    hover), codes (main first, each linked to the CPC scheme), similarity."""
    rows = []
    for item in items:
        codes, shown = item.get("codes") or [], []
        for code in codes:
            if shown and len(", ".join(shown + [code])) > SIMILAR_CODES_CHARS:
                break
            shown.append(code)
        cell = ", ".join(code_link(code) for code in shown)
        if len(shown) < len(codes):
            cell += f', <span title="{escape(", ".join(codes))}">…</span>'
        rows.append([patent_link(str(item["id"])), title_cell(item.get("title") or ""), cell, f"{item['similarity']:.2f}"])
    return html_table(["Patent", "Title", "Codes", "Similarity"], rows, numbers=(3,))


def suggestion_table(items: list[dict], level: str) -> str:
    """Class, subclass or main-group suggestions as a small HTML table: code (linked to the CPC scheme),
    title (in sentence case, whole on hover), probability; best first, as sent."""
    rows = [[code_link(item["code"]), title_cell(item.get("title") or ""), f"{item['probability']:.1%}"] for item in items]
    return html_table([level, "Title", "Probability"], rows, numbers=(2,))


def _probability_chart(p: dict) -> alt.Chart:
    frame = pd.DataFrame(
        {
            "section": [s.code for s in SECTIONS],
            "name": [s.name for s in SECTIONS],
            "probability": [p["probabilities"].get(s.code, 0.0) for s in SECTIONS],
            "predicted": [s.code == p["label"] for s in SECTIONS],
        }
    )
    return (
        alt.Chart(frame, title="Probability of each section")
        .mark_bar()
        .encode(
            x=alt.X("section:N", sort=list(CODES), title="CPC section", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            color=alt.condition("datum.predicted", alt.value("#e4572e"), alt.value("#8da0cb")),
            tooltip=["section", "name", alt.Tooltip("probability:Q", format=".1%")],
        )
    )


def answer_codes(p: dict) -> dict[str, str]:
    """The codes an answer suggests, for the correction form: its sections, classes, subclasses and main
    groups, in that order, each with its name or title (code -> "code · title")."""
    options = {code: f"{code} · {section(code).name}" for code in p.get("sections") or [p["label"]]}
    for key in ("classes", "subclasses", "groups"):
        for item in p.get(key) or []:
            title = item.get("title") or ""
            if len(title) > OPTION_TITLE_CHARS:  # a picked code is a chip in the field: keep it short
                title = title[: OPTION_TITLE_CHARS - 1].rstrip() + "…"
            options.setdefault(item["code"], f"{item['code']} · {title}" if title else item["code"])
    return options


OPTION_TITLE_CHARS = 60


def correction_codes(label: str, picked: list[str], typed: str) -> list[str]:
    """The correction form's codes, main first: those picked, then those typed (comma-separated), in
    CPC's spelling, each once; ``[]`` for none. Raises ``ValueError`` with a message for the page: a
    code that cannot be read, or a main code outside the chosen section ``label``."""
    codes: list[str] = []
    for item in picked + [t.strip() for t in re.split(r"[,;]", typed) if t.strip()]:
        try:
            code = canonical_code(item)
        except CodeError as exc:
            raise ValueError(f"{exc}.") from None
        if code not in codes:
            codes.append(code)
    if codes and codes[0][0] != label:  # the API would refuse it: say so here, with the way out
        raise ValueError(
            f"{codes[0]} is in section {codes[0][0]}, not {label}: choose section {codes[0][0]}, "
            f"or put a code of section {label} first."
        )
    return codes


def _feedback(client: ApiClient, p: dict) -> None:
    st.markdown("#### Is this right?")
    if not client.api_key:
        st.caption("Feedback is switched off: the UI was started without an API key (PATENTCLF_API_KEY).")
        return
    if not p.get("id"):
        st.caption("This prediction carries no id, so feedback cannot be linked to it.")
        return
    options = answer_codes(p)
    with st.form("feedback"):
        label = st.selectbox(
            "The correct section",
            options=list(CODES),
            index=CODES.index(p["label"]),
            format_func=lambda code: f"{code} · {section(code).name}",
        )
        picked = st.multiselect(
            "The right codes from the answer (optional; the main one first)",
            options=list(options),
            key="feedback_codes",
            format_func=options.get,
            placeholder="Pick codes in order of importance…",
            help="A patent has several codes; the first you pick is its main code, which must be in the section above.",
        )
        suggested = [c["code"] for c in p.get("groups") or p.get("subclasses") or []][:1]
        typed = st.text_input(
            "Other codes (optional, comma-separated)",
            key="feedback_code",
            placeholder=f"e.g. {suggested[0]}, H04N" if suggested else "e.g. G06F 3/00, H04N",
            help="Codes the answer does not offer: classes such as G06, subclasses such as G06F or main groups "
            "such as G06F 3/00. They come after the codes picked above.",
        )
        live_tags = _live_tags(client) if "tags" in p else []
        picked_tags = st.multiselect(
            "The patent's tags (optional)",
            options=live_tags,
            key="feedback_tags",
            format_func=lambda tag: f"{tag[0]} / {tag[1]}",
            placeholder="Pick its tags from the live tag sets…",
            help="Its right tags in your own tag sets: accepted ones become examples for refitting the set.",
        ) if live_tags else []  # fmt: skip
        comment = st.text_input("Comment (optional)", key="feedback_comment")
        sent = st.form_submit_button("Send feedback")
    if sent:
        try:
            codes = correction_codes(label, picked, typed)
        except ValueError as exc:
            st.error(str(exc))
        else:
            try:
                tags = [{"set": tag_set, "name": name} for tag_set, name in picked_tags]
                st.session_state["feedback_ack"] = client.feedback(
                    p["id"], label, comment.strip() or None, codes=codes, tags=tags or None
                )
            except ApiError as exc:
                st.error(exc.message)
    ack = st.session_state.get("feedback_ack")
    if ack:
        codes = ack.get("codes") or [ack.get("code") or ack["label"]]
        if codes == [ack["label"]]:
            finer = ""
        elif len(codes) == 1:
            finer = f", code {codes[0]}"
        else:
            finer = f", codes {', '.join(codes)} (main first)"
        if ack.get("tags"):
            finer += ", tags " + ", ".join(f"{tag['set']} / {tag['name']}" for tag in ack["tags"])
        verdict = f"you agreed with the model{finer}" if ack.get("agreed") else f"recorded as section {ack['label']}{finer}"
        if ack.get("status") == "pending":
            after = "It waits for a reviewer, who accepts or rejects it before it can train the next model."
        else:
            after = "It is accepted for training the next model."
        st.success(f"Thank you: feedback {ack['feedback_id']} was stored ({verdict}). {after}")


def _live_tags(client: ApiClient) -> list[tuple[str, str]]:
    """The live tag sets' tags as (set, name), for the correction form ([] when /model does not answer)."""
    try:
        sets = client.model_info().get("tags") or []
    except ApiError:
        return []
    return [(tag_set["name"], tag["name"]) for tag_set in sets for tag in tag_set.get("tags") or []]


# -- batch mode -----------------------------------------------------------------------------------


def _batch(client: ApiClient) -> None:
    upload = st.file_uploader(
        "Upload patents: a CSV or JSONL file with a `text` column, or `title` + `abstract` (an `id` column is kept)",
        type=list(UPLOAD_TYPES),
        key="batch_file",
    )
    if upload is None:
        return
    try:
        rows = read_upload(upload.name, upload.getvalue())
    except DataError as exc:
        st.error(str(exc))
        return
    st.write(f"{len(rows.texts)} patents in {upload.name}.")
    _answer_options(prefix="batch_opt_")
    small = len(rows.texts) <= EXPLAIN_MAX_ROWS
    st.checkbox(
        "Explain" if small else f"Explain (files of up to {EXPLAIN_MAX_ROWS} patents)",
        key="batch_opt_explain",
        disabled=not small,
        help="Which sentences raised or lowered each answer's best codes (in the downloads; the table shows the "
        "sentence that raised the section most). About one prediction per sentence of each text.",
    )
    options = chosen_options(st.session_state, prefix="batch_opt_")
    if not small:
        options.pop("explain", None)
    done = st.session_state.get("batch")
    if st.button("Classify all", type="primary"):
        done = None
        predictions = []
        bar = st.progress(0.0, text="Classifying…")
        chunk = EXPLAIN_CHUNK if options.get("explain") else BATCH_CHUNK
        try:
            for start in range(0, len(rows.texts), chunk):
                predictions += client.predict_batch(rows.texts[start : start + chunk], options)
                bar.progress(len(predictions) / len(rows.texts), text=f"Classified {len(predictions)} of {len(rows.texts)}")
        except ApiError as exc:
            st.error(exc.message)
        else:
            done = {"file_id": upload.file_id, "table": results_table(rows, predictions)}
        st.session_state["batch"] = done
        bar.empty()
    if not done or done["file_id"] != upload.file_id:
        return
    table = done["table"]
    shown = table[["id", "label", "name", "confidence"]].copy()
    if table_has_hierarchy(table):  # the codes only; titles and probabilities are in the downloads
        shown.insert(4, "sections", table["sections"].map("; ".join))
        shown.insert(5, "subclasses", table["subclasses"].map(_codes))
        if table["groups"].map(len).any():
            shown.insert(6, "groups", table["groups"].map(_codes))
    # The user's own columns, then the flags, then the text (last: it is the widest; a cut cell shows
    # whole on hover), so that the answer's columns come first on the screen.
    for name in [c for c in table.columns if c not in shown.columns and c not in ANSWER_COLUMNS and c != "text"]:
        shown[name] = table[name]
    if "tags" in table.columns:  # the live tag sets' tags, as in the CSV download
        shown.insert(list(shown.columns).index("confidence") + 1, "tags", table["tags"].map(tag_cell))
    for name in ("needs_review", "truncated", "text"):
        shown[name] = table[name]
    if "explanation" in table.columns:  # the sentence that raised the section most, beside the text
        shown.insert(
            list(shown.columns).index("text"),
            "explained by",
            [top_sentence(t, e) for t, e in zip(table["text"], table["explanation"])],
        )
    # Why an answer needs review, in the reasons' short names, beside the flag.
    reasons = table["review_reasons"].map(lambda items: ", ".join(item["reason"] for item in items or []))
    why = "why" if "why" not in shown.columns else "why (review)"  # an upload may have a column of that name
    shown.insert(list(shown.columns).index("needs_review") + 1, why, reasons)
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        # Widths that fit the answer on a laptop screen; a cut cell shows whole on hover.
        column_config={
            "confidence": st.column_config.ProgressColumn("confidence", format="percent", min_value=0.0, max_value=1.0),
            **{name: st.column_config.TextColumn(name, width="small") for name in ("label", "name", "sections", why)},
            **({"tags": st.column_config.TextColumn("tags", width="medium")} if "tags" in shown.columns else {}),
            **{
                name: st.column_config.TextColumn(name, width="medium")
                for name in ("subclasses", "groups", "text", "explained by")
            },
            **{name: st.column_config.CheckboxColumn(name, width="small") for name in ("needs_review", "truncated")},
        },
    )
    stem = upload.name.rsplit(".", 1)[0]
    left, right = st.columns(2)
    left.download_button("Download CSV", to_csv(table), file_name=f"{stem}-predictions.csv", mime="text/csv")
    right.download_button("Download JSONL", to_jsonl(table), file_name=f"{stem}-predictions.jsonl", mime="application/x-ndjson")


def top_sentence(text: str, explanation: dict | None) -> str:
    """The sentence that raised the section's probability most, with its effect ("" where none did)."""
    codes = (explanation or {}).get("codes") or []
    if not codes or max(codes[0]["effects"]) <= 0:
        return ""
    effects = codes[0]["effects"]
    best = effects.index(max(effects))
    span = explanation["sentences"][best]
    return f"{effects[best]:+.3f} {codes[0]['code']}: {text[span['start'] : span['end']]}"


def _codes(items: list[dict]) -> str:
    return ", ".join(item["code"] for item in items)
