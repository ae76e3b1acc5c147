"""Pieces every page shares: the API client and the sidebar's API status."""

from __future__ import annotations

import streamlit as st

from patentclf.ui.client import ApiClient, ApiError

STATUS_TIMEOUT = 3.0  # seconds; the sidebar status must not hold up the page when the API hangs


def get_client() -> ApiClient:
    # Read on every run, so a restarted UI or a test picks up its environment; it costs nothing.
    return ApiClient.from_env()


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
