"""The Streamlit entry script: ``streamlit run src/patentclf/ui/app.py`` (or ``patentclf ui``).

Settings come from the environment of the Streamlit process: ``PATENTCLF_API_URL`` (default
http://localhost:9000), ``PATENTCLF_API_KEY`` (for feedback; kept server-side, never sent to the
browser) and ``PATENTCLF_UI_TIMEOUT`` (seconds to wait for the API).
"""

import streamlit as st

from patentclf.ui import classify, monitoring, review_queue, tags

st.set_page_config(
    page_title="patentclf", page_icon="📄", layout="wide"
)  # wide: the batch table's columns and the hierarchy tables fit

page = st.navigation(
    [
        st.Page(classify.render, title="Classify", icon=":material/search:", url_path="classify", default=True),
        st.Page(monitoring.render, title="Monitoring", icon=":material/monitoring:", url_path="monitoring"),
        st.Page(review_queue.render, title="Review queue", icon=":material/rule:", url_path="review-queue"),
        st.Page(tags.render, title="Tags", icon=":material/label:", url_path="tags"),
    ]
)
page.run()
