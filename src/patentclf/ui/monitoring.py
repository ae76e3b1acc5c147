"""The Monitoring page: what the served model has been doing, from the API's ``GET /stats``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from patentclf.corpus.labels import CODES
from patentclf.ui.client import ApiError
from patentclf.ui.common import get_client, show_api_status


def render() -> None:
    client = get_client()
    show_api_status(client)
    st.title("Monitoring")
    st.button("Refresh")  # any click reruns the page, which fetches fresh figures
    try:
        stats = client.stats()
    except ApiError as exc:
        st.error(exc.message)
        return
    feedback = stats.get("feedback") or {}
    rate = feedback.get("agreement_rate")
    first, second, third, fourth = st.columns(4)
    first.metric("Predictions served", stats.get("predictions_total", 0))
    second.metric("Feedback received", feedback.get("total", 0))
    third.metric("Feedback agreeing with the model", "-" if rate is None else f"{rate:.0%}")
    fourth.metric("Feedback waiting for review", feedback.get("pending", 0))

    st.subheader("Predictions over time")
    over_time = pd.DataFrame(stats.get("predictions_over_time") or [], columns=["time", "count"])
    if over_time.empty:
        st.info("No predictions yet.")
    else:
        over_time["time"] = pd.to_datetime(over_time["time"], utc=True, errors="coerce")
        st.bar_chart(over_time, x="time", y="count")

    st.subheader("Label mix: served against training")
    st.caption("Share of each section among served predictions and among the model's training rows.")
    st.bar_chart(_label_mix(stats), stack=False)

    st.subheader("Confidence of served predictions")
    histogram = pd.DataFrame(stats.get("confidence_histogram") or [], columns=["bin", "count"])
    if histogram.empty or histogram["count"].sum() == 0:
        st.info("No predictions yet.")
    else:
        st.bar_chart(histogram.astype({"bin": str}), x="bin", y="count")

    st.subheader("Feedback")
    if not feedback.get("total"):
        st.info('No feedback yet. Users send it from the Classify page ("Is this right?").')
    else:
        st.write(
            f"{feedback.get('agreed', 0)} of {feedback['total']} answers agreed with the model; "
            f"{feedback.get('disagreed', 0)} corrected it; {feedback.get('pending', 0)} wait for a reviewer "
            "(`patentclf feedback review`) before they can train the next model."
        )
        st.progress(float(rate or 0.0), text=f"agreement {rate or 0:.0%}")
    if stats.get("storage"):
        st.caption(
            f"Feedback and the predictions log are kept in `{stats['storage']}` (the service's `database_url` or `feedback_db`)."
        )


def _label_mix(stats: dict) -> pd.DataFrame:
    """Both mixes as shares, so a few hundred predictions compare with thousands of training rows."""
    frame = pd.DataFrame(
        {
            "served": [float((stats.get("label_mix") or {}).get(code, 0)) for code in CODES],
            "training": [float((stats.get("training_mix") or {}).get(code, 0)) for code in CODES],
        },
        index=pd.Index(CODES, name="section"),
    )
    totals = frame.sum()
    return frame.div(totals.where(totals > 0, 1.0), axis=1)
