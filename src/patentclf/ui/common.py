"""Pieces every page shares: the API client and the sidebar's API status."""

from __future__ import annotations

import streamlit as st

from patentclf.ui.client import ApiClient, ApiError

STATUS_TIMEOUT = 3.0  # seconds; the sidebar status must not hold up the page when the API hangs
REVIEWER_KEY_HINT = (
    "Type a reviewer's key below (kept for this browser session only): under `make serve` the key printed in "
    "the terminal is one; otherwise a key named in the service's reviewers setting."
)


def get_client() -> ApiClient:
    # Read on every run, so a restarted UI or a test picks up its environment; it costs nothing.
    return ApiClient.from_env()


def reviewer_client(client: ApiClient) -> ApiClient:
    """The client with the reviewer's key typed into a page in this browser session, if one was."""
    typed = st.session_state.get("reviewer_key")  # not the input's own key: Streamlit drops that once hidden
    return client.with_key(typed) if typed else client


def ask_for_reviewer_key(why: str) -> None:
    """Say why a reviewer's key is needed, and take one for this browser session (the pages that need one)."""
    st.info(f"{why} {REVIEWER_KEY_HINT}")
    st.text_input("Reviewer's API key", type="password", key="reviewer_key_input", on_change=_keep_reviewer_key)


def _keep_reviewer_key() -> None:
    st.session_state["reviewer_key"] = st.session_state["reviewer_key_input"].strip()
    st.session_state.pop("reviewer_key_refused", None)  # a new key: ask again only if it is refused too


def show_api_status(client: ApiClient) -> bool:
    """Tell the user in the sidebar whether the API answers; True when it is ready."""
    with st.sidebar:
        st.caption(f"API: {client.base_url}")
        try:
            info = client.model_info(timeout=min(STATUS_TIMEOUT, client.timeout))
        except ApiError as exc:
            st.error(exc.message)
            return False
        st.success(f"API ready · serving {info.get('model_version', 'an unknown model')}")
        return True
