"""The Review queue page: the recent predictions most likely wrong first (the API's ``GET
/feedback/queue``, with a reviewer's key: the UI's own where it is one, else one typed into the page for
this browser session), each with one-click Confirm (feedback giving the predicted section: a
confirmation is a label too) or a correction (section and codes)."""

from __future__ import annotations

import streamlit as st

from patentclf.corpus.labels import CODES, section
from patentclf.ui.classify import correction_codes
from patentclf.ui.client import ApiClient, ApiError
from patentclf.ui.common import ask_for_reviewer_key, get_client, reviewer_client, show_api_status

TEXT_CHARS = 300  # of each text shown at first; the whole text on expand
LIMITS = (10, 20, 50, 100)
REASON_LABELS = {
    "too_short": "too short",
    "not_english": "not English",
    "not_patent_like": "not patent-like",
    "uncertain": "uncertain",
}


def render() -> None:
    client = get_client()
    show_api_status(client)
    st.title("Review queue")
    st.caption(
        "The answers most likely to be wrong, first. Confirm a right one, or correct it: both are stored as "
        "labels for training the next model."
    )
    client = reviewer_client(client)
    done = st.session_state.pop("queue_ack", None)
    if done:
        st.success(done)
    failed = st.session_state.pop("queue_error", None)
    if failed:
        st.error(failed)
    left, right = st.columns([1, 3])
    limit = left.selectbox("Show", LIMITS, index=1, key="queue_limit", format_func=lambda n: f"{n} predictions")
    right.button("Refresh")  # any click reruns the page, which fetches the queue again
    if not client.api_key:
        ask_for_reviewer_key("The review queue needs a reviewer's API key.")
        return
    try:
        queue = client.review_queue(limit)
    except ApiError as exc:
        if exc.status_code in (401, 403):  # the UI's own key (under `make serve`) or a mistyped one
            ask_for_reviewer_key(exc.message)
        else:
            st.error(exc.message)
        return
    st.caption(f"{queue['order']}. {queue['scope']}")
    if not queue["items"]:
        st.info("Nothing to review: no recent prediction whose text the server holds is waiting for a look.")
        return
    for item in queue["items"]:
        _show_item(client, item)


def describe(item: dict) -> str:
    """One line about an answer: its section, confidence, reasons and the runners-up."""
    parts = [f"**{item['label']} · {section(item['label']).name}**", f"confidence {item['confidence']:.1%}"]
    reasons = [REASON_LABELS.get(r, r) for r in item.get("reasons") or []]
    if item.get("evidence_disagrees"):
        reasons.append("the nearest patents vote for another section")
    if reasons:
        parts.append(":orange-badge[" + ", ".join(reasons) + "]")
    others = [f"{s['code']} {s['probability']:.0%}" for s in (item.get("sections") or [])[1:]]
    if others:
        parts.append("then " + ", ".join(others))
    return " · ".join(parts)


def cut(text: str, chars: int = TEXT_CHARS) -> str:
    return text if len(text) <= chars else text[:chars].rstrip() + "…"


def _show_item(client: ApiClient, item: dict) -> None:
    key = item["id"]
    with st.container(border=True):
        st.markdown(describe(item))
        codes = [f"{level['code']} ({level['probability']:.0%})" for level in (item.get("levels") or [])[1:]]
        if codes:
            st.caption("Best codes: " + " › ".join(codes))
        st.text(cut(item["text"]))
        if len(item["text"]) > TEXT_CHARS:
            with st.expander("Whole text"):
                st.text(item["text"])
        st.caption(f"Prediction {key} · {item['time']} · {item['model_version']}")
        confirm, correct = st.columns([1, 3])
        confirm.button(
            "Confirm", key=f"confirm-{key}", type="primary", on_click=_confirm, args=(client, item),
            help=f"The answer is right: store section {item['label']} as this text's label.",
        )  # fmt: skip
        with correct.popover("Correct"):
            with st.form(f"correct-{key}"):
                st.selectbox(
                    "The correct section", CODES, index=CODES.index(item["label"]), key=f"section-{key}",
                    format_func=lambda code: f"{code} · {section(code).name}",
                )  # fmt: skip
                st.text_input(
                    "Codes (optional, comma-separated, main first)", key=f"codes-{key}", placeholder="e.g. G06F 3/00, H04N"
                )
                st.form_submit_button("Send correction", key=f"send-{key}", on_click=_correct, args=(client, item))


def _confirm(client: ApiClient, item: dict) -> None:
    try:
        ack = client.feedback(item["id"], item["label"])
    except ApiError as exc:
        st.session_state["queue_error"] = exc.message
        return
    st.session_state["queue_ack"] = f"Confirmed section {item['label']}: feedback {ack['feedback_id']} ({ack['status']})."


def _correct(client: ApiClient, item: dict) -> None:
    key = item["id"]
    label = st.session_state[f"section-{key}"]
    try:
        codes = correction_codes(label, [], st.session_state.get(f"codes-{key}") or "")
        ack = client.feedback(key, label, codes=codes or None)
    except ValueError as exc:
        st.session_state["queue_error"] = str(exc)
        return
    except ApiError as exc:
        st.session_state["queue_error"] = exc.message
        return
    given = ", ".join(ack.get("codes") or [ack["label"]])
    verdict = "agrees with the model" if ack.get("agreed") else f"corrects {item['label']}"
    st.session_state["queue_ack"] = f"Stored {given} ({verdict}): feedback {ack['feedback_id']} ({ack['status']})."
