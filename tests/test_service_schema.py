"""The OpenAPI schema says what the server enforces: schemathesis, with every check, against a live
server (bounded in examples and time), and the non-blank pattern checked character by character."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from patentclf.service.schemas import GROUP_CODE, NON_BLANK
from patentclf.store.feedback import MAX_CODES

from .servers import LiveServer

API_KEY = "schema-key"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# A text over max_text_chars or a batch over max_batch is refused with 413, the status HTTP has for it;
# schemathesis's default list for "schema-violating request rejected" leaves 413 out.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""


def test_the_code_pattern_means_what_the_server_reads():
    # What the schema allows in codes is exactly what canonical_code reads (spaces only around a code).
    from patentclf.corpus.hierarchy import CodeError, canonical_code

    samples = ["G", "g06", "G06F", "G06F 3/00", "g06f3/00", " A61K 039/00 ", "G06F 3 / 00", "\tG06F", "G06F\n", "G06F 3/048",
               "G06F 3/00 (2013)", "Z01", "G6", "G06FF", "G06F 12345/00", "", " "]  # fmt: skip
    for text in samples:
        try:
            canonical_code(text)
            readable = True
        except CodeError:
            readable = False
        allowed = bool(re.fullmatch(GROUP_CODE, text))
        assert allowed == (readable and text.strip(" ") == text.strip()), text


def test_the_non_blank_pattern_means_what_strip_means():
    pattern = re.compile(NON_BLANK)
    mismatched = [hex(c) for c in range(0x110000) if bool(pattern.fullmatch(chr(c))) == chr(c).isspace()]
    assert not mismatched


def test_the_schema_states_the_configured_limits(tiny_bundle, tmp_path):
    with LiveServer(tiny_bundle, feedback_db=tmp_path / "fb.db", max_text_chars=1234, max_batch=7) as live:
        models = httpx.get(live.url + "/openapi.json").json()["components"]["schemas"]
    assert models["PredictRequest"]["properties"]["text"]["maxLength"] == 1234
    texts = models["BatchPredictRequest"]["properties"]["texts"]
    assert (texts["minItems"], texts["maxItems"], texts["items"]["maxLength"]) == (1, 7, 1234)
    assert texts["items"]["pattern"] == NON_BLANK and texts["items"]["minLength"] == 1
    feedback = models["FeedbackRequest"]
    assert [branch["required"] for branch in feedback["anyOf"]] == [["prediction_id"], ["text"]]
    # Codes: a list of at most 20, a label or codes, and both in one section when both are given.
    [codes, _null] = feedback["properties"]["codes"]["anyOf"]
    assert (codes["minItems"], codes["maxItems"], codes["items"]["pattern"]) == (1, MAX_CODES, GROUP_CODE)
    label_or_codes, same_section = feedback["allOf"]
    assert [branch["required"] for branch in label_or_codes["anyOf"]] == [["label"], ["codes"]]
    assert len(same_section["anyOf"]) == 2 + 9  # no label, no codes, or one branch per section


def test_the_schema_describes_every_answer_option(tiny_bundle, tmp_path):
    from patentclf.inference.options import MAX_SUGGESTIONS, PredictOptions

    with LiveServer(tiny_bundle, feedback_db=tmp_path / "fb.db") as live:
        models = httpx.get(live.url + "/openapi.json").json()["components"]["schemas"]
    for request in ("PredictRequest", "BatchPredictRequest"):
        options = models[request]["properties"]["options"]
        assert options["$ref"] == "#/components/schemas/PredictOptions" and options["description"]
        assert "options" not in models[request].get("required", [])
    described = models["PredictOptions"]
    assert set(described["properties"]) == set(PredictOptions.model_fields) and described["additionalProperties"] is False
    for name, field in described["properties"].items():
        assert field["description"], name
    for name in ("classes", "subclasses", "groups", "similar"):
        field = described["properties"][name]
        assert (field["type"], field["minimum"], field["maximum"], field["default"]) == ("integer", 0, MAX_SUGGESTIONS, 5)
    assert (described["properties"]["threshold"]["minimum"], described["properties"]["threshold"]["maximum"]) == (0, 1)
    assert described["properties"]["depth"]["enum"] == ["section", "class", "subclass", "group"]
    assert (described["properties"]["explain"]["type"], described["properties"]["explain"]["default"]) == ("boolean", False)
    # The answer's explanation is described too (left out of answers that do not ask for it).
    explanation = models["PredictionResponse"]["properties"]["explanation"]
    assert explanation["description"] and "explanation" not in models["PredictionResponse"]["required"]
    assert set(models["Explanation"]["properties"]) == {"method", "sentences", "sentence_count", "capped", "codes"}


def test_schemathesis_finds_nothing(tiny_bundle, tmp_path):
    # A generous deadline: a 503 for a passed deadline would count as a server error here.
    # The key may review too (its name is "default"), so the review routes reach validation as well.
    env = {"PATENTCLF_API_KEY": API_KEY, "PATENTCLF_REVIEWERS": '["default"]'}
    options = dict(env=env, feedback_db=tmp_path / "fb.db", max_text_chars=2000, max_batch=8, request_timeout_s=300)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with LiveServer(tiny_bundle, **options) as live:
        command = [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            live.url + "/openapi.json",
            "--checks",
            "all",
            "--header",
            f"X-API-Key: {API_KEY}",  # so that feedback reaches validation, not only the key check
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--workers",
            "1",
            "--max-response-time",
            "60",
            "--request-timeout",
            "120",
            "--generation-database",
            "none",
            "--no-color",
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1200, cwd=tmp_path
        )  # its files stay out of the repo
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout
