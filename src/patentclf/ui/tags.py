"""The Tags page: the user's own categories. It lists the tag sets the service answers with (``/model``)
and their cross-validated figures per tag, fits a new set from an uploaded file of examples through the
API (``POST /tags/fit``, in the background, its progress polled from ``GET /tags/fit/{job}``), shows the
new set's figures, and makes it live for the service (``POST /tags/{name}/live``). Fitting and making
live need a reviewer's key, as the Review queue page does.

The upload is read by the batch tab's reader (a ``text`` column, or ``title`` + ``abstract``) and its
``tags`` column checked here, so that a file the fit would refuse is refused before it is sent, in a
message naming the file and the row.
"""

from __future__ import annotations

import re
from html import escape

import streamlit as st

from patentclf.corpus.inputs import DataError
from patentclf.inference.tags import FEW_EXAMPLES, MIN_EXAMPLES
from patentclf.training.tags import split_tags
from patentclf.ui.batch import UPLOAD_TYPES, read_upload
from patentclf.ui.client import ApiClient, ApiError
from patentclf.ui.common import ask_for_reviewer_key, get_client, reviewer_client, show_api_status
from patentclf.ui.tables import html_table

TAGS_COLUMN = "tags"
# A set's name is its folder in the service's tags_dir: the API's rule (service/tag_sets.py's NAME).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
POLL_S = 1.0  # seconds between looks at a running fit
FIT = "tag_fit"  # session state: the status of the fit this browser session started (the API's JSON)


def render() -> None:
    client = reviewer_client(get_client())
    show_api_status(client)
    st.title("Tags")
    st.caption(
        "Your own categories, learnt from a few example patents each: answers carry the live sets' tags beside the CPC codes."
    )
    done = st.session_state.pop("tags_ack", None)
    if done:
        st.success(done)
    failed = st.session_state.pop("tags_error", None)
    if failed:
        st.error(failed)
    _show_live_sets(client)
    st.markdown("### Fit a new tag set")
    refused = st.session_state.get("reviewer_key_refused")
    if not client.api_key or refused:
        ask_for_reviewer_key(refused or "Fitting a tag set needs a reviewer's API key.")
        return
    _fit_form(client)
    job = st.session_state.get(FIT)
    if job and job["status"] == "running":
        _progress(client)
    elif job:
        _show_fit(client, job)


# -- the live sets ----------------------------------------------------------------------------------


def figures_table(tags: list[dict]) -> str:
    """A tag set's tags as a small HTML table: name, examples, threshold and the cross-validated
    precision, recall and F1 at that threshold."""

    def number(value, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [
        [
            escape(tag["name"]),
            str(tag.get("examples", "-")),
            number(tag.get("threshold"), 3),
            number(tag.get("precision")),
            number(tag.get("recall")),
            number(tag.get("f1")),
        ]
        for tag in tags
    ]
    return html_table(["Tag", "Examples", "Threshold", "Precision", "Recall", "F1"], rows, numbers=(1, 2, 3, 4, 5))


def few_examples_warning(tags: list[dict]) -> str | None:
    """A warning for tags fitted on fewer than ``FEW_EXAMPLES`` examples (None when there are none)."""
    few = [f"{tag['name']} ({tag['examples']})" for tag in tags if (tag.get("examples") or 0) < FEW_EXAMPLES]
    if not few:
        return None
    return (
        f"Few examples: {', '.join(few)}. Their figures rest on a handful of rows and may not hold; give each tag "
        f"at least {FEW_EXAMPLES} examples."
    )


def _show_set(tag_set: dict) -> None:
    st.markdown(figures_table(tag_set.get("tags") or []), unsafe_allow_html=True)
    warning = few_examples_warning(tag_set.get("tags") or [])
    if warning:
        st.warning(warning)


def _show_live_sets(client: ApiClient) -> None:
    st.markdown("### Live tag sets")
    try:
        sets = client.model_info().get("tags") or []
    except ApiError as exc:
        st.error(exc.message)
        return
    if not sets:
        st.info("No tag set is live: answers carry no tags. Fit one below, or start the service with `--tags DIR`.")
        return
    for tag_set in sets:
        st.markdown(f"##### {tag_set['name']}")
        st.caption(f"Fitted on {tag_set.get('examples') or '?'} examples · model {str(tag_set.get('model_digest'))[:12]}")
        _show_set(tag_set)
    st.caption("Figures cross-validated on the set's own examples: each tag's threshold is the one with the best F1 out of fold.")


# -- fitting a new set ------------------------------------------------------------------------------


def read_tag_examples(file_name: str, content: bytes) -> list[dict]:
    """An uploaded file of examples as the API's rows (``{"text", "tags", "id"?}``). Raises
    :class:`DataError` with a message naming the file and row: a file the batch reader refuses (its
    type, no text column, an empty text), no ``tags`` column, an empty tag name (``a;;b``), no tag at
    all, a tag with fewer than ``MIN_EXAMPLES`` examples or on every row."""
    upload = read_upload(file_name, content, larger_with="`patentclf tags fit --examples`")
    if not any(TAGS_COLUMN in own for own in upload.columns):
        columns = sorted(set().union(*(own.keys() for own in upload.columns)) | {"text"})
        raise DataError(
            f"{file_name}: no '{TAGS_COLUMN}' column: give each row its tags, ';'-separated (other columns: {columns})"
        )
    rows, first, counts = [], {}, {}
    for number, (own_id, text, own) in enumerate(zip(upload.own_ids, upload.texts, upload.columns), start=1):
        tags = split_tags(own.get(TAGS_COLUMN))
        if "" in tags:
            raise DataError(f"{file_name}: row {number}: an empty tag name in {own.get(TAGS_COLUMN)!r}")
        for tag in tags:
            first.setdefault(tag, number)
            counts[tag] = counts.get(tag, 0) + 1
        rows.append({"text": text, "tags": tags, **({"id": own_id} if own_id is not None else {})})
    if not counts:
        raise DataError(f"{file_name}: no row has a tag: give the examples their tags, ';'-separated")
    for tag, count in counts.items():
        if count < MIN_EXAMPLES:
            raise DataError(
                f"{file_name}: row {first[tag]}: tag {tag!r} has {count} example; each tag needs at least {MIN_EXAMPLES}"
            )
        if count == len(rows):
            raise DataError(f"{file_name}: row {first[tag]}: tag {tag!r} is on every row; give rows without it too")
    return rows


def _fit_form(client: ApiClient) -> None:
    with st.form("tag_fit_form"):
        st.text_input(
            "Name of the new tag set",
            key="tag_set_name",
            placeholder="e.g. batteries",
            help="Letters, digits, '.', '_' and '-' (up to 64); a tag is named by its set in the answers.",
        )
        st.file_uploader(
            "Examples: a CSV or JSONL file with a `text` column (or `title` + `abstract`) and a `tags` column of "
            "';'-separated names (an `id` column is kept)",
            type=list(UPLOAD_TYPES),
            key="tag_examples",
        )
        sent = st.form_submit_button("Fit tag set", type="primary")
    if sent:
        _start_fit(client)


def _start_fit(client: ApiClient) -> None:
    name = (st.session_state.get("tag_set_name") or "").strip()
    upload = st.session_state.get("tag_examples")
    if not NAME.fullmatch(name):
        st.error("Give the tag set a name of letters, digits, '_' and '-' (up to 64, starting with a letter or digit).")
        return
    if upload is None:
        st.error("Upload a file of examples first.")
        return
    try:
        examples = read_tag_examples(upload.name, upload.getvalue())
    except DataError as exc:
        st.error(f"Cannot fit on this file: {exc}")
        return
    try:
        job = client.fit_tags(name, examples)
    except ApiError as exc:
        if exc.status_code in (401, 403):  # the UI's own key (under `make serve`) or a mistyped one
            st.session_state["reviewer_key_refused"] = exc.message
            st.rerun()
        st.error(exc.message)
        return
    st.session_state[FIT] = job


@st.fragment(run_every=POLL_S)
def _progress(client: ApiClient) -> None:
    """The running fit's progress, looked at every ``POLL_S`` seconds; the whole page again once it ends."""
    job = st.session_state[FIT]
    try:
        job = client.tag_fit_status(job["job"])
    except ApiError as exc:  # e.g. the service restarted and forgot the job
        job = {**job, "status": "failed", "error": exc.message}
    st.session_state[FIT] = job
    if job["status"] != "running":
        st.rerun()  # the whole page: the figures (or the error) in place of the progress
    embedded, examples = job.get("embedded") or 0, job["examples"]
    step = (
        f"reading the examples with the model: {embedded} of {examples}"
        if embedded < examples
        else "cross-validating each tag's threshold"
    )
    st.progress(min(embedded / max(examples, 1), 1.0), text=f"Fitting {job['name']}: {step}…")


def _show_fit(client: ApiClient, job: dict) -> None:
    if job["status"] == "failed":
        st.error(f"Fitting {job['name']} failed: {job.get('error') or 'no reason given'}")
        return
    tag_set = job.get("tag_set") or {}
    st.markdown(f"#### {job['name']}: fitted on {job['examples']} examples")
    _show_set(tag_set)
    if job.get("live"):
        st.caption(f"{job['name']} is live: answers carry its tags.")
        return
    st.button(
        f"Make {job['name']} live",
        key="make_live",
        type="primary",
        on_click=_make_live,
        args=(client, job),
        help="The service answers with this tag set from the next request on (until it restarts: list it in the "
        "service's tags setting to keep it).",
    )


def _make_live(client: ApiClient, job: dict) -> None:
    try:
        client.make_tags_live(job["name"])
    except ApiError as exc:
        if exc.status_code in (401, 403):
            st.session_state["reviewer_key_refused"] = exc.message
        else:
            st.session_state["tags_error"] = f"Could not make {job['name']} live: {exc.message}"
        return
    st.session_state[FIT] = {**job, "live": True}
    st.session_state["tags_ack"] = f"{job['name']} is live: answers carry its tags from now on."
