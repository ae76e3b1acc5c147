"""The Review queue page, run by ``AppTest`` against the real service on loopback (tiny model)."""

from __future__ import annotations

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from patentclf.store.feedback import FeedbackStore
from patentclf.ui.review_queue import TEXT_CHARS, cut

from .servers import API_KEY, run_api

TIMEOUT = 60
TEXTS = [
    "a turbine engine with a valve and a lamp for heating the engine",
    "an optical sensor measuring the time of a clock" + " with a computer" * 40,
    "a woven fabric of yarn and paper fibre",
]


@pytest.fixture(scope="module")
def api(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui-queue-api")
    # The UI's key (named default) is a reviewer's, as the queue needs.
    with run_api(tiny_bundle, folder, env={"PATENTCLF_REVIEWERS": '["default"]'}) as live:
        live.db = folder / "feedback.db"
        yield live


@pytest.fixture
def ui_env(api, monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_URL", api.url)
    monkeypatch.setenv("PATENTCLF_API_KEY", API_KEY)
    monkeypatch.delenv("PATENTCLF_UI_TIMEOUT", raising=False)
    return api


def queue_page() -> AppTest:
    at = AppTest.from_string("from patentclf.ui.review_queue import render\nrender()", default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def queue(api) -> list[dict]:
    return httpx.get(api.url + "/feedback/queue", params={"limit": 100}, headers={"X-API-Key": API_KEY}, timeout=30).json()[
        "items"
    ]


def test_the_queue_shows_answers_most_likely_wrong_first_and_confirm_stores_a_label(ui_env):
    answers = httpx.post(ui_env.url + "/predict/batch", json={"texts": TEXTS}, timeout=60).json()["predictions"]
    at = queue_page()
    assert not at.error
    items = queue(ui_env)
    assert {a["id"] for a in answers} <= {i["id"] for i in items}
    # Each item: its answer and confidence, its text cut (the whole text on expand), Confirm and Correct.
    lines = [m.value for m in at.markdown if m.value.startswith("**")]
    assert len(lines) == len(items)
    assert lines[0].startswith(f"**{items[0]['label']} · ") and f"confidence {items[0]['confidence']:.1%}" in lines[0]
    shown = [t.value for t in at.text]
    assert cut(items[0]["text"]) in shown
    long = next(i for i in items if len(i["text"]) > TEXT_CHARS)
    assert long["text"] in shown and cut(long["text"]) in shown and any(e.label == "Whole text" for e in at.expander)

    first = items[0]
    at.button(key=f"confirm-{first['id']}").click().run()
    assert not at.exception and not at.error
    assert f"Confirmed section {first['label']}" in at.success[0].value
    stored = {r["prediction_id"]: r for r in FeedbackStore(ui_env.db).rows()}
    assert stored[first["id"]]["agreed"] == 1 and stored[first["id"]]["label"] == first["label"]
    # Refreshed after the action: the confirmed one is gone from the page and the queue.
    assert first["id"] not in {i["id"] for i in queue(ui_env)}
    assert not any(b.key == f"confirm-{first['id']}" for b in at.button)


def test_a_correction_stores_the_section_and_codes(ui_env):
    httpx.post(ui_env.url + "/predict", json={"text": "a polymer compound with an acid catalyst"}, timeout=60)
    at = queue_page()
    item = queue(ui_env)[0]
    other = "H" if item["label"] != "H" else "G"
    at.selectbox(key=f"section-{item['id']}").select(other)
    at.text_input(key=f"codes-{item['id']}").input(f"{other}01")
    at.button(key=f"send-{item['id']}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"Stored {other}01 (corrects {item['label']})" in at.success[0].value
    row = {r["prediction_id"]: r for r in FeedbackStore(ui_env.db).rows()}[item["id"]]
    assert row["agreed"] == 0 and row["codes"] == [f"{other}01"]


def test_a_code_outside_the_section_is_refused_on_the_page(ui_env):
    httpx.post(ui_env.url + "/predict", json={"text": "a door of a building on a road"}, timeout=60)
    at = queue_page()
    item = queue(ui_env)[0]
    at.selectbox(key=f"section-{item['id']}").select("A")
    at.text_input(key=f"codes-{item['id']}").input("H04N")
    at.button(key=f"send-{item['id']}").click().run()
    assert "H04N is in section H, not A" in at.error[0].value
    assert item["id"] not in {r["prediction_id"] for r in FeedbackStore(ui_env.db).rows()}


def test_a_key_that_is_not_a_reviewers_asks_for_one_and_a_typed_reviewer_key_opens_the_queue(api, monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_URL", api.url)
    monkeypatch.setenv("PATENTCLF_API_KEY", "wrong-key")  # as the UI's own key under `make serve`: not a reviewer's
    httpx.post(api.url + "/predict", json={"text": "a loom weaving yarn into a fabric of wool"}, timeout=60).raise_for_status()
    at = queue_page()
    assert "refused the UI's API key" in at.info[0].value and "reviewer" in at.info[0].value
    assert not at.markdown or not any(m.value.startswith("**") for m in at.markdown)
    # The reviewer types their key: the queue opens, and stays open on the next rerun (a click).
    at.text_input(key="reviewer_key_input").input(API_KEY).run()
    assert not at.exception and not at.info and not at.error
    assert "reviewer_key_input" not in [t.key for t in at.text_input]
    assert any(m.value.startswith("**") for m in at.markdown)
    at.button[0].click().run()  # Refresh
    assert "reviewer_key_input" not in [t.key for t in at.text_input] and not at.error
    assert any(m.value.startswith("**") for m in at.markdown)
    monkeypatch.delenv("PATENTCLF_API_KEY")
    assert "needs a reviewer's API key" in queue_page().info[0].value
