"""A real browser (Debian's headless Chromium) against the real UI and the real API, on loopback.

The UI runs through ``patentclf ui`` and the API through uvicorn, each as a subprocess. Screenshots
of the pages are kept in ``test-artifacts/`` (ui-prediction.png, ui-monitoring.png, ui-hierarchy.png,
ui-nearest.png, ui-tags.png, ui-tags-answer.png).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from patentclf.corpus.labels import section
from patentclf.inference.review import REASONS
from patentclf.ui.examples import EXAMPLES

from .conftest import toy_rows
from .servers import json_api, run_api, run_ui
from .ui_samples import hierarchy_answer

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT = 90  # seconds, the longest any step may take on a busy machine; polls end as soon as it is done

pytestmark = pytest.mark.browser
HIERARCHY_HEADING = "CPC sections, classes and subclasses"
GROUPS_HEADING = "CPC sections, classes, subclasses and main groups"
ESPACENET = "https://worldwide.espacenet.com/classification?locale=en_EP#!/CPC="
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'


@pytest.fixture(scope="module")
def servers(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    # The UI's key (named default) is a reviewer's: the Tags page fits and makes live with it.
    reviewers = {"PATENTCLF_REVIEWERS": '["default"]'}
    with run_api(tiny_bundle, folder / "api", env=reviewers) as api, run_ui(api.url, folder / "ui") as ui_url:
        yield api, ui_url


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.fail(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1500",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def submit(browser, ui_url: str, text: str, reload: bool = True):
    """Open the Classify page (``reload=False``: it is open), type ``text``, click Classify; the
    result's heading once it is drawn."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT, poll_frequency=0.2)
    if reload:
        browser.get(ui_url)
    text_area = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea"))
    wait.until(lambda d: "API ready" in d.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text)
    text_area.send_keys(text)
    classify = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Classify")
    classify.click()
    return wait.until(lambda d: next((h for h in d.find_elements(By.TAG_NAME, "h3") if h.text.startswith("Section ")), None))


def test_browser_submits_a_patent_and_sees_the_section(servers, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    api, ui_url = servers
    example = EXAMPLES[3]
    expected = httpx.post(f"{api.url}/predict", json={"text": example.text}, timeout=30).json()
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.2)

    heading = submit(browser, ui_url, example.text)
    assert heading.text == f"Section {expected['label']} · {section(expected['label']).name}"
    # Let the probability chart draw before the picture is taken.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, CHART))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"{expected['confidence']:.1%}" in body
    assert "Is this right?" in body
    assert "Traceback" not in body
    assert HIERARCHY_HEADING not in body  # the tiny model knows sections only: nothing more to show

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "ui-prediction.png"))

    # The monitoring page counts that prediction (the service's log reaches /stats within a second).
    browser.get(f"{ui_url}/monitoring")
    wait.until(lambda d: "Predictions served" in d.find_element(By.TAG_NAME, "body").text)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')) >= 2)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Label mix: served against training" in body and "Traceback" not in body
    assert browser.save_screenshot(str(ARTIFACTS / "ui-monitoring.png"))


def test_browser_highlights_the_sentences_that_raised_or_lowered_the_answer(servers, browser):
    """Explain ticked: under the answer, the text with each sentence coloured by what it did to the
    section's probability (green raised, red lowered), the effect beside it and in words on hover."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    api, ui_url = servers
    text = EXAMPLES[4].text
    expected = httpx.post(f"{api.url}/predict", json={"text": text, "options": {"explain": True}}, timeout=30).json()
    explanation = expected["explanation"]
    [code] = explanation["codes"]  # the tiny model answers sections only
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.2)
    browser.get(ui_url)
    explain = wait.until(lambda d: next((c for c in d.find_elements(By.CSS_SELECTOR, "label") if c.text == "Explain"), None))
    explain.click()
    submit(browser, ui_url, text, reload=False)
    spans = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".explanation span.explained"))
    assert len(spans) == len(explanation["sentences"]) > 1
    for span, where, effect in zip(spans, explanation["sentences"], code["effects"]):
        assert span.text == f"{text[where['start'] : where['end']]} {effect:+.3f}"
        colour = span.value_of_css_property("background-color")
        if round(effect, 3) > 0:
            assert "raised" in span.get_attribute("title") and colour.startswith("rgba(46, 160, 67")
        elif round(effect, 3) < 0:
            assert "lowered" in span.get_attribute("title") and colour.startswith("rgba(228, 87, 46")
        assert f"{code['probability']:.3f} with the whole text" in span.get_attribute("title") or round(effect, 3) == 0
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Which sentences made the answer" in body and "Traceback" not in body
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", spans[0])
    assert browser.save_screenshot(str(ARTIFACTS / "ui-explanation.png"))


def test_browser_shows_sections_classes_and_subclasses(browser, tmp_path):
    """A model with hierarchy heads and an index (stood in for by a server that sends its answer): the
    result shows every section, then the class, subclass and main-group suggestions with their titles,
    then the nearest patents; codes link to the CPC scheme, patents to Google Patents, cut titles are
    whole on hover."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    groups = [{"code": "H04M 1/00", "title": "Substation equipment, e.g. for use by subscribers", "probability": 0.31}]
    similar = [
        {
            "id": "US9135439",
            "title": "Methods to detect risks",
            "code": "H04M 1/725",
            "codes": ["H04M 1/725", "G06F 21/56"],
            "similarity": 0.912,
        },
        {"id": "US9811997", "title": "Fraud scoring", "code": "G06Q 20/40", "codes": ["G06Q 20/40"], "similarity": 0.905},
        {"id": "US9754311", "title": "Payment risk", "code": "G06Q 40/02", "codes": ["G06Q 40/02"], "similarity": 0.9},
    ]
    uncertain = {"reason": "uncertain", "message": REASONS["uncertain"]}
    answer = hierarchy_answer(
        groups=groups, similar=similar, needs_review=True, review_reasons=[uncertain], evidence_disagrees=True
    )
    answer["levels"].append(
        {"level": "group", "code": "H04M 1/00", "title": groups[0]["title"], "probability": 0.31, "right_share": 0.334}
    )
    answers = {"/model": {"model_version": answer["model_version"]}, "/predict": answer}
    with json_api(answers) as api_url, run_ui(api_url, tmp_path / "ui") as ui_url:
        heading = submit(browser, ui_url, EXAMPLES[4].text)
        assert heading.text == "Section H · Electricity"
        wait = WebDriverWait(browser, WAIT, poll_frequency=0.2)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, CHART))
        body = browser.find_element(By.TAG_NAME, "body").text
        assert GROUPS_HEADING in body and "Traceback" not in body
        assert "H · Electricity · 88%" in body and "G · Physics · 57%" in body
        # Whether to trust it: the review reason, and the nearest patents pointing elsewhere (here to G).
        assert f"Check this answer: T{REASONS['uncertain'][1:]}." in body
        assert (
            "The nearest classified patents point elsewhere: most of their votes (weighted by similarity) are for another "
            "section than H. Of the 3 shown below: G 2, H 1; the nearest elsewhere is US9811997, G06Q 20/40." in body
        )
        tables = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMarkdownContainer"] table')
        assert len(tables) == 5
        levels, classes, subclasses, main_groups, nearest = (table.text for table in tables)
        # The answer at each level, with what its probability has meant on held-out patents.
        assert all(word in levels for word in ("Level", "Right at this probability", "Main group", "H04M 1/00", "31.0%", "33%"))
        assert "Subclass H04M Telephonic communication 47.0% 46%" in levels.replace("\n", " ")
        assert "the share whose main code it was" in body
        # Titles in the CPC's sentence case.
        assert all(w in classes for w in ("Class", "Title", "Probability", "H04", "Electric communication technique", "62.0%"))
        assert all(word in subclasses for word in ("Subclass", "H04M", "Telephonic communication", "47.0%"))
        assert "Substation equipment, e.g. for use by subscribers" in main_groups
        assert all(word in nearest for word in ("US9135439", "Methods to detect risks", "H04M 1/725, G06F 21/56", "0.91"))
        # The answer at each level first; then sections, classes, subclasses.
        position = 0
        for part in ("The answer at each level", GROUPS_HEADING, "G · Physics · 57%", "Electric communication technique", "H04M"):
            assert part in body[position:], f"{part!r} is not after the parts before it"
            position = body.index(part, position) + len(part)

        def link(text: str):
            found = [a for a in browser.find_elements(By.TAG_NAME, "a") if a.text == text]
            hrefs = {a.get_attribute("href") for a in found}  # a code may be in the levels table and its own
            assert len(hrefs) == 1, (text, hrefs)
            assert all(a.get_attribute("target") == "_blank" for a in found)  # a new tab: the result stays
            return hrefs.pop()

        # Codes link to the CPC scheme at every level (the badges' sections too), patents to Google Patents.
        assert link("H04") == f"{ESPACENET}H04"
        assert link("G06Q") == f"{ESPACENET}G06Q"
        assert link("H04M 1/00") == f"{ESPACENET}H04M1/00"
        assert link("G06F 21/56") == f"{ESPACENET}G06F21/56"
        assert link("G · Physics · 57%") == f"{ESPACENET}G"
        assert link("US9135439") == "https://patents.google.com/patent/US9135439"
        # G06Q's 300-character title is cut in the table and whole on hover (the browser's tooltip).
        cut = next(
            span for span in tables[2].find_elements(By.CSS_SELECTOR, "span[title]") if span.text.startswith("Data processing")
        )
        whole = cut.get_attribute("title")
        assert cut.text.endswith("…") and len(cut.text) <= 110
        assert whole.startswith(cut.text[:-1]) and whole.endswith(
            "supervisory or forecasting purposes, not otherwise provided for"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", tables[0])
        assert browser.save_screenshot(str(ARTIFACTS / "ui-hierarchy.png"))
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", tables[4])
        assert browser.save_screenshot(str(ARTIFACTS / "ui-nearest.png"))


def test_browser_fits_a_tag_set_from_an_upload_makes_it_live_and_the_answer_shows_tags(servers, browser, tmp_path):
    """The Tags page: a file of examples uploaded, the set fitted through the API with its progress, its
    cross-validated figures shown, made live; then a classification carries its tags. (Last: the set stays
    live in the shared service.)"""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    api, ui_url = servers
    tag_of = {"H": "electrical", "G": "measuring"}  # the toy sections' rows as a user's categories
    examples = tmp_path / "examples.csv"
    lines = ["id,text,tags"] + [f"{r['id']},{r['text']},{tag_of.get(r['section'], '')}" for r in toy_rows(32, seed=5)]
    examples.write_text("\n".join(lines) + "\n")
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.2)

    def body() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    browser.get(f"{ui_url}/tags")
    wait.until(lambda d: "API ready" in d.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text)
    name = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'input[aria-label="Name of the new tag set"]'))
    assert "No tag set is live" in body()
    name.send_keys("toy")
    browser.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(examples))
    wait.until(lambda d: "examples.csv" in body())  # uploaded to the UI before the form is sent
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Fit tag set").click()
    wait.until(lambda d: "toy: fitted on 32 examples" in body())
    table = next(t.text for t in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMarkdownContainer"] table'))
    assert all(word in table for word in ("Tag", "Examples", "Threshold", "Precision", "Recall", "F1", "electrical", "measuring"))
    assert "Few examples" in body() and "Traceback" not in body()
    live = wait.until(
        lambda d: next((b for b in d.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Make toy live"), None)
    )
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "ui-tags.png"))
    live.click()
    wait.until(lambda d: "toy is live" in body())
    assert [s["name"] for s in httpx.get(api.url + "/model", timeout=10).json()["tags"]] == ["toy"]

    # A patent the live set tags (asked of the API): the Classify page shows its tags with the answer.
    texts = [r["text"] for r in toy_rows(16, seed=9) if r["section"] in tag_of]
    answers = httpx.post(f"{api.url}/predict/batch", json={"texts": texts}, timeout=30).json()["predictions"]
    text, expected = next((t, a) for t, a in zip(texts, answers) if a["tags"])
    submit(browser, ui_url, text)
    wait.until(lambda d: "Your tags" in body())
    tags = next(t.text for t in browser.find_elements(By.CSS_SELECTOR, "table") if "Tag set" in t.text)
    for tag in expected["tags"]:
        assert f"toy {tag['name']} {tag['probability']:.1%}" in tags.replace("\n", " ")
    assert "Traceback" not in body()
    assert browser.save_screenshot(str(ARTIFACTS / "ui-tags-answer.png"))
