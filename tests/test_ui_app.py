"""The Streamlit pages, run by ``AppTest`` against the real service on loopback (tiny model)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from patentclf.corpus.hierarchy import sentence_case
from patentclf.corpus.labels import CODES, section
from patentclf.ui import app_path
from patentclf.ui.examples import EXAMPLES

from .servers import API_KEY, free_port, json_api, run_api, silent_server
from .ui_samples import hierarchy_answer, html_tables

TIMEOUT = 60  # seconds an AppTest run may take (a prediction on the tiny model takes well under one)


UI_KEY = "ui-key-of-the-tests"  # named "ui": its feedback waits for a reviewer, as make serve sets it up


@pytest.fixture(scope="module")
def api(tiny_bundle, tmp_path_factory):
    env = {"PATENTCLF_API_KEYS": json.dumps({"ui": UI_KEY})}
    with run_api(tiny_bundle, tmp_path_factory.mktemp("ui-app-api"), env=env) as live:
        yield live


@pytest.fixture
def ui_env(api, monkeypatch):
    """The environment of the Streamlit process: where the API is, and the server-side key."""
    monkeypatch.setenv("PATENTCLF_API_URL", api.url)
    monkeypatch.setenv("PATENTCLF_API_KEY", API_KEY)
    monkeypatch.delenv("PATENTCLF_UI_TIMEOUT", raising=False)
    return api


def classify_page() -> AppTest:
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def monitoring_page() -> AppTest:
    return AppTest.from_string("from patentclf.ui.monitoring import render\nrender()", default_timeout=TIMEOUT).run()


def classify(at: AppTest, text: str) -> AppTest:
    at.text_area(key="text").input(text)
    at.button[0].click().run()  # "Classify"
    assert not at.exception
    return at


def texts_of(elements) -> list[str]:
    return [e.value for e in elements]


def test_example_classifies_with_section_name_and_confidence(ui_env):
    at = classify_page()
    assert "API ready" in texts_of(at.sidebar.success)[0]
    example = EXAMPLES[3]
    at.selectbox(key="example").select(3).run()
    assert at.text_area(key="text").value == example.text
    classify(at, example.text)

    expected = httpx.post(f"{ui_env.url}/predict", json={"text": example.text}, timeout=30).json()
    code, name = expected["label"], section(expected["label"]).name
    assert texts_of(at.subheader) == [f"Section {code} · {name}"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Predicted section": code, "Section confidence": f"{expected['confidence']:.1%}"}
    assert at.get("vega_lite_chart"), "the probability chart is missing"
    assert not at.error


def test_the_options_beside_the_text_box_are_sent_with_the_request(ui_env, monkeypatch):
    from patentclf.ui.client import ApiClient

    sent: list[dict | None] = []
    real = ApiClient.predict
    monkeypatch.setattr(ApiClient, "predict", lambda self, text, options=None: sent.append(options) or real(self, text, options))
    at = classify(classify_page(), "an optical sensor measuring a distance")
    assert sent == [{}]  # nothing changed: no options, today's request
    at.number_input(key="opt_classes").set_value(2)
    at.number_input(key="opt_similar").set_value(0)
    at.slider(key="opt_threshold").set_value(0.1)
    at.checkbox(key="opt_own_sections").check().run()
    at.slider(key="opt_sections").set_value(0.8)
    at.radio(key="opt_depth").set_value("section")
    classify(at, "an optical sensor measuring a distance")
    assert sent[-1] == {"classes": 2, "similar": 0, "threshold": 0.1, "sections_threshold": 0.8, "depth": "section"}
    assert texts_of(at.subheader)[0].startswith("Section ") and not at.error  # the API took them


EXPLAINED = "Wheel mounted data logger\nA data logger has an optical sensor and a clock. It is mounted on a vehicle wheel."


def test_explain_highlights_the_sentences_under_the_answer(ui_env):
    at = classify_page()
    at.checkbox(key="opt_explain").check()
    classify(at, EXPLAINED)
    expected = httpx.post(f"{ui_env.url}/predict", json={"text": EXPLAINED, "options": {"explain": True}}, timeout=30).json()
    assert "#### Which sentences made the answer" in texts_of(at.markdown)
    [html] = [m for m in texts_of(at.markdown) if 'class="explanation"' in m]
    [code] = expected["explanation"]["codes"]  # a section-only model explains its section
    for span, effect in zip(expected["explanation"]["sentences"], code["effects"]):
        sentence = EXPLAINED[span["start"] : span["end"]]
        kind = "raises" if round(effect, 3) > 0 else "lowers" if round(effect, 3) < 0 else "none"
        assert f'<span class="explained {kind}"' in html and f"{sentence} <small><b>{effect:+.3f}</b>" in html
    assert "Wheel mounted data logger" in html and "<br>" in html  # the title's line break kept


def test_the_batch_tab_sends_its_options_and_explains_small_files(ui_env):
    content = "id,text\nUS-a,A fabric of weaving yarn. It is red.\nUS-b,A circuit with a transistor. And an antenna.\n"
    at = classify_page()
    at.file_uploader[0].set_value(("two.csv", content.encode(), "text/csv")).run()
    at.number_input(key="batch_opt_similar").set_value(0)
    at.checkbox(key="batch_opt_explain").check()
    next(b for b in at.button if b.label == "Classify all").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.columns).index("explained by") == list(table.columns).index("text") - 1
    texts = ["A fabric of weaving yarn. It is red.", "A circuit with a transistor. And an antenna."]
    body = {"texts": texts, "options": {"explain": True, "similar": 0}}
    answers = httpx.post(f"{ui_env.url}/predict/batch", json=body, timeout=30).json()["predictions"]
    for shown, answer, text in zip(table["explained by"], answers, texts):
        effects = answer["explanation"]["codes"][0]["effects"]
        if max(effects) > 0:
            span = answer["explanation"]["sentences"][effects.index(max(effects))]
            assert shown == f"{max(effects):+.3f} {answer['label']}: {text[span['start'] : span['end']]}"


HIERARCHY_HEADING = "#### CPC sections, classes and subclasses"


def test_section_only_model_shows_no_hierarchy(ui_env):
    # The tiny model is trained on sections only: its answer is [label] and no classes or subclasses.
    at = classify(classify_page(), EXAMPLES[4].text)
    answer = httpx.post(f"{ui_env.url}/predict", json={"text": EXAMPLES[4].text}, timeout=30).json()
    assert answer["sections"] == [answer["label"]] and answer["classes"] == answer["subclasses"] == []
    assert at.subheader and not any(m.startswith("#### CPC sections") for m in texts_of(at.markdown))
    assert not any("-badge[" in m for m in texts_of(at.markdown))
    assert not html_tables(texts_of(at.markdown)), "a section-only answer must not draw empty tables"


def hierarchy_page(answer: dict) -> AppTest:
    """The Classify page holding an answer of a model with hierarchy heads, as after a click on Classify."""
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
    at.session_state["prediction"] = answer
    at.run()
    assert not at.exception and not at.error
    return at


ESPACENET = "https://worldwide.espacenet.com/classification?locale=en_EP#!/CPC="


def test_hierarchy_shows_sections_then_classes_and_subclasses(ui_env):
    answer = hierarchy_answer()
    at = hierarchy_page(answer)
    assert texts_of(at.subheader) == ["Section H · Electricity"]
    markdown = texts_of(at.markdown)
    heading = markdown.index(HIERARCHY_HEADING)
    # Each section's badge links to the section in the CPC scheme.
    assert markdown[heading + 1] == (
        f"Belongs to [:orange-badge[H · Electricity · 88%]]({ESPACENET}H) [:blue-badge[G · Physics · 57%]]({ESPACENET}G)"
    )

    levels, classes, subclasses = html_tables(markdown)
    # First the answer at each level, with the share of held-out answers right at that probability.
    assert levels.header == ["Level", "Code", "Title", "Probability", "Right at this probability"]
    assert [[c.text for c in row] for row in levels.rows] == [
        ["Section", "H", "Electricity", "71.0%", "70%"],
        ["Class", "H04", "Electric communication technique", "62.0%", "60%"],
        ["Subclass", "H04M", "Telephonic communication", "47.0%", "46%"],
    ]
    assert levels.rows[1][1].href == f"{ESPACENET}H04"
    assert classes.header == ["Class", "Title", "Probability"]
    assert [c.text for c in classes.column("Class")] == [c["code"] for c in answer["classes"]]  # best first, as sent
    # Titles in the CPC's sentence case, whole on hover; codes linked to the scheme, in a new tab.
    assert [c.text for c in classes.rows[0]] == ["H04", "Electric communication technique", "62.0%"]
    assert classes.rows[0][0].links == [
        {"href": f"{ESPACENET}H04", "target": "_blank", "rel": "noopener noreferrer", "text": "H04"}
    ]
    assert classes.rows[1][1].text == classes.rows[1][1].hover[0] == "Computing; Calculating; Counting"
    assert subclasses.header == ["Subclass", "Title", "Probability"]
    assert [c.text for c in subclasses.column("Subclass")] == ["H04M", "G06Q", "H04W", "H04L", "G07F"]
    assert [c.href for c in subclasses.column("Subclass")] == [
        f"{ESPACENET}{code}" for code in ("H04M", "G06Q", "H04W", "H04L", "G07F")
    ]
    assert [c.text for c in subclasses.rows[0]] == ["H04M", "Telephonic communication", "47.0%"]
    # A title with "e.g." in it is in sentence case too (it stayed in capitals before).
    assert subclasses.rows[3][1].text == "Transmission of digital information, e.g. telegraphic communication"
    # G06Q's 300-character title is cut to keep the table compact, and is whole on hover.
    long_title = subclasses.rows[1][1]
    assert long_title.text.endswith("…") and len(long_title.text) <= 110
    assert long_title.hover == [sentence_case(answer["subclasses"][1]["title"])]
    assert long_title.hover[0].startswith(long_title.text[:-1]) and len(long_title.hover[0]) > 300
    # The rest of the result is still there: the section chart and the feedback form.
    assert at.get("vega_lite_chart") and at.get("form")


def test_groups_and_the_nearest_patents_show_under_the_subclasses(ui_env):
    from patentclf.corpus.hierarchy import title

    groups = [{"code": code, "title": title(code), "probability": p} for code, p in (("H04M 1/00", 0.31), ("H04M 3/00", 0.12))]
    similar = [
        {
            "id": "US9135439",
            "title": "Methods to detect risks",
            "code": "H04M 1/725",
            "codes": ["H04M 1/725", "G06F 21/56"],
            "similarity": 0.912,
        },
        {
            "id": "US6144717",
            "title": "WHEEL MOUNTED DATA LOGGER",
            "code": "H04M 3/42",
            "codes": ["H04M 3/42"] + [f"H04M 3/{n}" for n in range(500, 530)],
            "similarity": 0.874,
        },
        {"id": "not-a-patent", "title": "", "code": "", "codes": ["X99Z 1/00"], "similarity": 0.5},
    ]
    at = hierarchy_page(hierarchy_answer(groups=groups, similar=similar))
    markdown = texts_of(at.markdown)
    assert "#### CPC sections, classes, subclasses and main groups" in markdown
    assert "#### Nearest classified patents" in markdown
    _, classes, subclasses, main_groups, nearest = html_tables(markdown)
    assert main_groups.header == ["Main group", "Title", "Probability"]
    assert [c.text for c in main_groups.rows[0]] == ["H04M 1/00", "Substation equipment, e.g. for use by subscribers", "31.0%"]
    assert main_groups.rows[0][0].href == f"{ESPACENET}H04M1/00"
    assert nearest.header == ["Patent", "Title", "Codes", "Similarity"]
    first, second, odd = nearest.rows
    assert [c.text for c in first] == ["US9135439", "Methods to detect risks", "H04M 1/725, G06F 21/56", "0.91"]
    # The patent links to its page on Google Patents, each of its codes to the CPC scheme.
    assert first[0].links == [
        {
            "href": "https://patents.google.com/patent/US9135439",
            "target": "_blank",
            "rel": "noopener noreferrer",
            "text": "US9135439",
        }
    ]
    assert [link["href"] for link in first[2].links] == [f"{ESPACENET}H04M1/725", f"{ESPACENET}G06F21/56"]
    # A title in capitals in sentence case; a long list of codes cut, every code on hover.
    assert second[1].text == "Wheel mounted data logger"
    assert second[2].text.endswith(", …") and len(second[2].links) < 31
    assert second[2].hover == [", ".join(similar[1]["codes"])]
    # What cannot be linked is plain text.
    assert odd[0].text == "not-a-patent" and not odd[0].links and odd[2].text == "X99Z 1/00" and not odd[2].links


def test_sections_without_classes_show_no_tables(ui_env):
    sections_only = hierarchy_answer()["levels"][:1]  # a model without class heads answers its section only
    at = hierarchy_page(hierarchy_answer(classes=[], subclasses=[], levels=sections_only))
    assert "#### CPC sections" in texts_of(at.markdown)
    assert (
        f"Belongs to [:orange-badge[H · Electricity · 88%]]({ESPACENET}H) [:blue-badge[G · Physics · 57%]]({ESPACENET}G)"
        in texts_of(at.markdown)
    )
    assert not html_tables(texts_of(at.markdown))


def test_empty_text_asks_for_text(ui_env):
    at = classify(classify_page(), "   ")
    assert texts_of(at.warning) == ["Enter a patent's text first, or pick an example."]
    assert not at.subheader


REVIEW_NOTICE = "**Check this answer:**"


def test_needs_review_notice(tiny_bundle, tmp_path, monkeypatch):
    # A review threshold of 1: every prediction is marked for review, so the notice must show.
    with run_api(tiny_bundle, tmp_path / "api", env={"PATENTCLF_REVIEW_THRESHOLD": "1"}) as api:
        monkeypatch.setenv("PATENTCLF_API_URL", api.url)
        monkeypatch.setenv("PATENTCLF_API_KEY", API_KEY)
        assert httpx.post(f"{api.url}/predict", json={"text": "zzz qqq"}, timeout=30).json()["needs_review"] is True
        at = classify(classify_page(), "zzz qqq")
        notice = [w for w in texts_of(at.warning) if w.startswith(REVIEW_NOTICE)]
        # Every reason, in words: two words are too short, and nothing reaches a threshold of 1.
        assert len(notice) == 1 and "too short to classify" in notice[0] and "the model is unsure" in notice[0]


def test_no_review_notice_for_a_confident_prediction(ui_env):
    text = "a polymer compound with a catalyst and an acid"  # the toy task's C words: the tiny model is sure
    assert httpx.post(f"{ui_env.url}/predict", json={"text": text}, timeout=30).json()["needs_review"] is False
    at = classify(classify_page(), text)
    assert at.subheader and not any(w.startswith(REVIEW_NOTICE) for w in texts_of(at.warning))


def test_feedback_is_confirmed_and_stored(ui_env):
    at = classify(classify_page(), "a patient medicine for the tooth")
    predicted = at.metric[0].value
    other = next(code for code in CODES if code != predicted)
    before = ui_env.stats()["feedback"]

    at.selectbox[1].select(other)  # "The correct section", inside the feedback form
    at.text_input(key="feedback_comment").input("the UI test says so")
    at.button[1].click().run()  # "Send feedback"
    assert not at.exception and not at.error
    (message,) = [s for s in texts_of(at.success) if s.startswith("Thank you")]
    assert f"recorded as section {other}" in message and "accepted for training" in message

    after = ui_env.stats()["feedback"]
    assert after["total"] == before["total"] + 1
    assert after["disagreed"] == before["disagreed"] + 1
    feedback_id = message.split("feedback ")[1].split(" ")[0]
    assert feedback_id.isdigit() and int(feedback_id) >= 1


def test_feedback_from_a_reviewed_key_says_it_waits_and_monitoring_counts_it(ui_env, monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_KEY", UI_KEY)
    at = classify(classify_page(), "a patient medicine for the tooth")
    at.button[1].click().run()  # "Send feedback", agreeing with the model
    assert not at.exception and not at.error
    (message,) = [s for s in texts_of(at.success) if s.startswith("Thank you")]
    assert "waits for a reviewer" in message

    pending = ui_env.stats()["feedback"]["pending"]
    assert pending >= 1
    metrics = {m.label: m.value for m in monitoring_page().metric}
    assert metrics["Feedback waiting for review"] == str(pending)


def test_feedback_may_name_a_subclass_and_is_stored_at_that_level(ui_env):
    import sqlite3

    at = classify(classify_page(), "a patient medicine for the tooth")
    predicted = at.metric[0].value
    subclass = {
        "A": "A61K",
        "B": "B65D",
        "C": "C07D",
        "D": "D01F",
        "E": "E04B",
        "F": "F16H",
        "G": "G06F",
        "H": "H04L",
        "Y": "Y02E",
    }[predicted]
    other = next(code for code in CODES if code != predicted)

    at.selectbox[1].select(other)  # a code outside the chosen section is refused before sending
    at.text_input(key="feedback_code").input(subclass.lower())
    at.button[1].click().run()
    assert any(f"{subclass} is in section {predicted}, not {other}" in e for e in texts_of(at.error))
    assert not [s for s in texts_of(at.success) if s.startswith("Thank you")]

    at.selectbox[1].select(predicted)
    at.button[1].click().run()
    assert not at.exception and not at.error
    (message,) = [s for s in texts_of(at.success) if s.startswith("Thank you")]
    assert f"you agreed with the model, code {subclass}" in message
    feedback_id = int(message.split("feedback ")[1].split(" ")[0])
    with sqlite3.connect(ui_env.feedback_db) as db:
        stored = db.execute("SELECT * FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
    assert subclass in stored and predicted in stored


def test_the_correction_form_offers_the_answers_codes():
    from patentclf.ui.classify import answer_codes

    groups = [{"code": "H04M 1/00", "title": "Substation equipment", "probability": 0.3}]
    options = answer_codes(hierarchy_answer(groups=groups))
    assert list(options) == ["H", "G", "H04", "G06", "G07", "G09", "G08", "H04M", "G06Q", "H04W", "H04L", "G07F", "H04M 1/00"]
    assert options["H"] == "H · Electricity" and options["H04M 1/00"] == "H04M 1/00 · Substation equipment"
    section_only = {"label": "C", "sections": ["C"], "classes": [], "subclasses": []}
    assert list(answer_codes(section_only)) == ["C"]


def test_the_correction_forms_codes_are_read_main_first():
    from patentclf.ui.classify import correction_codes

    assert correction_codes("H", [], "") == []
    assert correction_codes("H", ["H04M 1/00", "H04M"], " h04w, G06F3/00 ;H04M ") == ["H04M 1/00", "H04M", "H04W", "G06F 3/00"]
    with pytest.raises(ValueError, match="G06Q is in section G, not H: choose section G, or put a code of section H first"):
        correction_codes("H", ["G06Q", "H04M"], "")
    with pytest.raises(ValueError, match="'G06F 3/048' is a subgroup: give its main group, G06F 3/00"):
        correction_codes("H", ["H04M"], "G06F 3/048")
    with pytest.raises(ValueError, match="not a CPC code: 'X12'"):
        correction_codes("H", [], "H04M, X12")


def send(at: AppTest) -> AppTest:
    [button] = [b for b in at.button if b.label == "Send feedback"]
    button.click().run()
    assert not at.exception
    return at


def test_feedback_may_give_several_codes_main_first(ui_env):
    import sqlite3

    real = httpx.post(f"{ui_env.url}/predict", json={"text": "a telephone with a keyboard"}, timeout=30).json()
    groups = [{"code": "H04M 1/00", "title": "Substation equipment", "probability": 0.31}]
    at = hierarchy_page(hierarchy_answer(id=real["id"], groups=groups))  # the sample's codes, a prediction the API knows
    stored_before = ui_env.stats()["feedback"]["total"]

    codes = at.multiselect(key="feedback_codes")
    codes.select("G06Q").select("H04M")  # the main code outside the section chosen (H): said, nothing sent
    send(at)
    assert any("G06Q is in section G, not H" in e for e in texts_of(at.error))
    assert not [s for s in texts_of(at.success) if s.startswith("Thank you")]
    assert ui_env.stats()["feedback"]["total"] == stored_before

    at.multiselect(key="feedback_codes").set_value(["H04M 1/00", "H04M", "G06Q"])
    at.text_input(key="feedback_code").input("h04w, G06F3/00, H04M")
    send(at)
    assert not at.exception and not at.error
    (message,) = [s for s in texts_of(at.success) if s.startswith("Thank you")]
    expected = ["H04M 1/00", "H04M", "G06Q", "H04W", "G06F 3/00"]
    assert f"codes {', '.join(expected)} (main first)" in message and "waits for a reviewer" not in message
    feedback_id = int(message.split("feedback ")[1].split(" ")[0])
    with sqlite3.connect(ui_env.feedback_db) as db:
        label, code, stored = db.execute("SELECT label, code, codes FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
    assert (label, code, json.loads(stored)) == ("H", "H04M 1/00", expected)


def test_no_key_means_no_feedback_form(ui_env, monkeypatch):
    monkeypatch.delenv("PATENTCLF_API_KEY")
    at = classify(classify_page(), "a bridge for the road")
    assert not at.get("form")
    assert any("Feedback is switched off" in c.value for c in at.caption)


def test_key_never_reaches_the_page(ui_env):
    at = classify(classify_page(), "a polymer and an acid")
    page = repr(at._tree)
    assert API_KEY not in page


def test_api_down_is_said_plainly(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PATENTCLF_API_URL", url)
    at = classify(classify_page(), "a lamp")
    message = f"The patentclf API at {url} is not reachable (connection refused). Is it running? Start it with `patentclf serve`."
    assert texts_of(at.main.error) == [message]
    assert texts_of(at.sidebar.error) == [message]
    assert not at.subheader


def test_api_hung_is_said_plainly(monkeypatch):
    with silent_server() as url:
        monkeypatch.setenv("PATENTCLF_API_URL", url)
        monkeypatch.setenv("PATENTCLF_UI_TIMEOUT", "1")
        started = time.monotonic()
        at = classify(classify_page(), "a lamp")
        assert time.monotonic() - started < 30
    assert any("did not answer within 1 s" in e for e in texts_of(at.error))
    assert not at.subheader


def test_batch_upload_shows_a_table_and_offers_downloads(ui_env):
    rows = [
        ("US-a", "Yarn", "a fabric of weaving yarn"),
        ("US-b", "Antenna", "a circuit with a transistor"),
        ("US-c", "Door", "a building door"),
    ]
    content = "id,title,abstract\n" + "".join(f"{i},{t},{a}\n" for i, t, a in rows)
    at = classify_page()
    at.file_uploader[0].set_value(("patents.csv", content.encode(), "text/csv")).run()
    assert "3 patents in patents.csv." in texts_of(at.markdown)
    next(b for b in at.button if b.label == "Classify all").click().run()
    assert not at.exception and not at.error

    table = at.dataframe[0].value
    assert list(table["id"]) == ["US-a", "US-b", "US-c"]
    answers = httpx.post(f"{ui_env.url}/predict/batch", json={"texts": [f"{t}\n{a}" for _, t, a in rows]}, timeout=30).json()
    assert list(table["label"]) == [p["label"] for p in answers["predictions"]]
    assert "sections" not in table.columns  # a section-only model: nothing to add to the table
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSONL"]


def test_batch_table_keeps_the_uploads_own_columns_after_the_answer(ui_env):
    content = "id,text,assignee,label\nUS-a,a fabric of weaving yarn,Acme,D\nUS-b,a circuit with a transistor,Initech,H\n"
    at = classify_page()
    at.file_uploader[0].set_value(("mine.csv", content.encode(), "text/csv")).run()
    next(b for b in at.button if b.label == "Classify all").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    columns = list(table.columns)
    # The answer first, then the user's columns (a clashing name marked as theirs), the flags, the text last.
    assert columns[:4] == ["id", "label", "name", "confidence"]
    assert columns[-6:] == ["assignee", "label (yours)", "needs_review", "why", "truncated", "text"]
    # "why": the review reasons' short names beside the flag (these texts are under 8 words).
    assert all(flag and "too_short" in why for flag, why in zip(table["needs_review"], table["why"]))
    assert list(table["assignee"]) == ["Acme", "Initech"] and list(table["label (yours)"]) == ["D", "H"]


def test_batch_table_shows_the_hierarchy_codes(monkeypatch):
    """A model with hierarchy heads (stood in for by a server that sends its answers): the batch table
    gains the sections and subclass codes."""
    first = hierarchy_answer()
    second = hierarchy_answer(label="G", name="Physics", sections=["G"], section_probabilities={"G": 0.9})
    answers = {"/model": {"model_version": first["model_version"]}, "/predict/batch": {"predictions": [first, second]}}
    with json_api(answers) as url:
        monkeypatch.setenv("PATENTCLF_API_URL", url)
        at = classify_page()
        content = b'{"id": "x", "text": "one"}\n{"id": "y", "text": "two"}\n'
        at.file_uploader[0].set_value(("two.jsonl", content, "application/json")).run()
        next(b for b in at.button if b.label == "Classify all").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.columns[:6]) == ["id", "label", "name", "confidence", "sections", "subclasses"]
    assert list(table["sections"]) == ["H; G", "G"]
    assert table.loc[0, "subclasses"] == "H04M, G06Q, H04W, H04L, G07F"


def test_bad_upload_is_explained(ui_env):
    at = classify_page()
    at.file_uploader[0].set_value(("notes.csv", b"name,claims\nx,y\n", "text/csv")).run()
    assert not at.exception
    assert texts_of(at.error)[0].startswith("notes.csv: no text column")


def test_monitoring_page_shows_the_stats(ui_env):
    for text in ("a turbine engine", "an optical sensor"):
        httpx.post(f"{ui_env.url}/predict", json={"text": text}, timeout=30).raise_for_status()
    deadline = time.monotonic() + 20  # the predictions log is flushed to /stats in the background
    while ui_env.stats()["predictions_total"] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    stats = ui_env.stats()
    at = monitoring_page()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Predictions served"] == str(stats["predictions_total"])
    assert metrics["Feedback received"] == str(stats["feedback"]["total"])
    assert texts_of(at.subheader) == [
        "Predictions over time",
        "Label mix: served against training",
        "Confidence of served predictions",
        "Feedback",
    ]
    assert len(at.get("vega_lite_chart")) == 3
    # Where feedback and the predictions log are kept (a fresh clone's database is shared by default).
    assert f"Feedback and the predictions log are kept in `{stats['storage']}`" in " ".join(texts_of(at.caption))


def test_monitoring_when_api_down(monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_URL", f"http://127.0.0.1:{free_port()}")
    at = monitoring_page()
    assert not at.exception
    assert "not reachable" in texts_of(at.error)[0]
    assert not at.metric
