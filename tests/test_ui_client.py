"""The UI's API client against the real service, and against servers that are down, hung or busy."""

from __future__ import annotations

import pytest

from patentclf.corpus.labels import CODES, section
from patentclf.ui.client import ApiClient, ApiError

from .servers import API_KEY, canned_server, free_port, json_body, run_api, silent_server


@pytest.fixture(scope="module")
def api(tiny_bundle, tmp_path_factory):
    with run_api(tiny_bundle, tmp_path_factory.mktemp("ui-client-api")) as live:
        yield live


def test_predict_answers_the_contract(api):
    p = ApiClient(api.url).predict("an optical sensor measuring with a computer clock")
    assert p["label"] in CODES
    assert p["name"] == section(p["label"]).name
    assert set(p["probabilities"]) == set(CODES)
    assert p["confidence"] == pytest.approx(max(p["probabilities"].values()), abs=1e-6)
    assert p["id"] and p["model_version"]


def test_batch_keeps_order(api):
    client = ApiClient(api.url)
    texts = ["the yarn fabric weaving of paper", "a circuit with antenna and transistor", "a bridge and building road"]
    batch = client.predict_batch(texts)
    assert [p["label"] for p in batch] == [client.predict(t)["label"] for t in texts]


def test_refused_request_reads_plainly(api):
    with pytest.raises(ApiError) as caught:
        ApiClient(api.url).predict("   ")
    assert caught.value.status_code == 422
    assert caught.value.message.startswith("The API could not accept this request:")
    assert "empty" in caught.value.message


def test_wrong_api_key_is_named(api):
    prediction = ApiClient(api.url).predict("a polymer compound with a catalyst")
    with pytest.raises(ApiError) as caught:
        ApiClient(api.url, api_key="not-the-key").feedback(prediction["id"], "C")
    assert caught.value.status_code == 401
    assert "PATENTCLF_API_KEY" in caught.value.message


def test_feedback_without_key_is_not_sent(api):
    before = api.stats()["feedback"]["total"]
    with pytest.raises(ApiError, match="no API key"):
        ApiClient(api.url).feedback("whatever", "G")
    assert api.stats()["feedback"]["total"] == before


def test_feedback_with_key_is_acknowledged(api):
    client = ApiClient(api.url, api_key=API_KEY)
    prediction = client.predict("an engine with a turbine valve")
    ack = client.feedback(prediction["id"], prediction["label"], "looks right")
    assert ack["prediction_id"] == prediction["id"] and ack["agreed"] is True


def test_tag_sets_need_a_reviewers_key(api):
    client = ApiClient(api.url)
    examples = [{"text": "a lamp", "tags": ["light"]}, {"text": "a loom", "tags": []}]
    with pytest.raises(ApiError, match="Fitting a tag set needs a reviewer's API key"):
        client.fit_tags("lights", examples)
    with pytest.raises(ApiError, match="needs a reviewer's API key"):
        client.make_tags_live("lights")
    # The service's key, not named among its reviewers here: refused by the API, in its words.
    with pytest.raises(ApiError, match="is not a reviewer's") as caught:
        client.with_key(API_KEY).tag_fit_status("no-such-job")
    assert caught.value.status_code == 403


def test_api_down():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ApiError, match="not reachable") as caught:
        ApiClient(url).predict("text")
    assert url in caught.value.message and "patentclf serve" in caught.value.message


def test_api_hung():
    with silent_server() as url, pytest.raises(ApiError, match="did not answer within 0.5 s"):
        ApiClient(url, timeout=0.5).predict("text")


def test_api_busy_says_when_to_retry():
    with canned_server(503, json_body({"detail": "queue full"}), {"Retry-After": "2", "Content-Type": "application/json"}) as url:
        with pytest.raises(ApiError) as caught:
            ApiClient(url).predict("text")
    assert caught.value.status_code == 503
    assert caught.value.message == "The API is busy (queue full). Please try again in 2 s."


def test_server_error_without_json():
    with canned_server(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}) as url:
        with pytest.raises(ApiError, match=r"The API failed \(HTTP 502\)"):
            ApiClient(url).stats()


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_URL", "http://example.invalid:1234/")
    monkeypatch.setenv("PATENTCLF_API_KEY", "k")
    monkeypatch.setenv("PATENTCLF_UI_TIMEOUT", "7")
    client = ApiClient.from_env()
    assert (client.base_url, client.api_key, client.timeout) == ("http://example.invalid:1234", "k", 7.0)
