"""Feedback: the SQLite store on its own, and POST /feedback on a live server (durability, concurrency,
refusals that store nothing)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from patentclf.corpus.data import load_split
from patentclf.corpus.labels import LABEL2ID
from patentclf.store.feedback import Feedback, FeedbackStore, export_jsonl

from .servers import LiveServer

API_KEY = "feedback-key"
HEADERS = {"X-API-Key": API_KEY}
# Named keys: alice writes labels, the web UI's key needs review, bob reviews.
NAMED_KEYS = {"alice": "alice-key", "ui": "ui-key", "bob": "bob-key"}
ALICE, UI, BOB = ({"X-API-Key": NAMED_KEYS[name]} for name in ("alice", "ui", "bob"))
TEAM_ENV = {"PATENTCLF_API_KEY": API_KEY, "PATENTCLF_API_KEYS": json.dumps(NAMED_KEYS), "PATENTCLF_REVIEWERS": '["bob"]'}


# --- the store (both engines, concurrency and faults: see test_store.py) -------------------------


def test_store_refuses_bad_rows_and_summarises(tmp_path):
    store = FeedbackStore(tmp_path / "fb.db")
    with pytest.raises(ValueError):
        store.add(Feedback(text="a text", label="Q"))
    with pytest.raises(ValueError):
        store.add(Feedback(text="  ", label="A"))
    assert store.count() == 0
    store.add(Feedback(text="one", label="A", predicted_label="A"))
    store.add(Feedback(text="two", label="B", predicted_label="C"))
    store.add(Feedback(text="three", label="C"))
    assert store.summary() == {"total": 3, "agreed": 1, "disagreed": 1, "pending": 0, "agreement_rate": 0.5}


def test_export_writes_rows_that_training_reads(tmp_path):
    store = FeedbackStore(tmp_path / "fb.db")
    store.add(Feedback(text="an optical sensor", label="G", predicted_label="H"))
    store.add(Feedback(text="a polymer, with acid", label="C", predicted_label="C"))
    output = tmp_path / "out" / "feedback.jsonl"
    assert export_jsonl(tmp_path / "fb.db", output) == 2
    split = load_split(str(output), "train")
    assert split.texts == ["an optical sensor", "a polymer, with acid"]
    assert split.labels == [LABEL2ID["G"], LABEL2ID["C"]]
    assert export_jsonl(tmp_path / "fb.db", output, disagreed_only=True) == 1
    with pytest.raises(FileNotFoundError):
        export_jsonl(tmp_path / "missing.db", output)


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("feedback-api") / "feedback.db"
    with LiveServer(tiny_bundle, env=TEAM_ENV, feedback_db=db) as live:
        live.db = db
        yield live


def stored(server) -> list[dict]:
    return FeedbackStore(server.db).rows()


def predict(server, text: str) -> dict:
    response = httpx.post(server.url + "/predict", json={"text": text})
    assert response.status_code == 200
    return response.json()


def test_feedback_by_prediction_id_stores_the_text_and_whether_it_agreed(server):
    prediction = predict(server, "a turbine engine with a valve")
    wrong = "G" if prediction["label"] != "G" else "H"
    response = httpx.post(
        server.url + "/feedback",
        json={"prediction_id": prediction["id"], "label": wrong, "comment": "it measures"},
        headers=HEADERS,
    )
    assert response.status_code == 201
    ack = response.json()
    expected = {"prediction_id": prediction["id"], "label": wrong, "code": wrong, "codes": [wrong], "agreed": False}
    expected["status"] = "accepted"
    assert ack == {"feedback_id": ack["feedback_id"], **expected}
    row = FeedbackStore(server.db).get(ack["feedback_id"])
    assert row["text"] == "a turbine engine with a valve" and row["predicted_label"] == prediction["label"]
    assert row["comment"] == "it measures" and row["model_version"] == prediction["model_version"]

    again = httpx.post(
        server.url + "/feedback", json={"prediction_id": prediction["id"], "label": prediction["label"].lower()}, headers=HEADERS
    )
    assert again.status_code == 201 and again.json()["agreed"] is True and again.json()["label"] == prediction["label"]


def test_feedback_by_text_alone(server):
    response = httpx.post(server.url + "/feedback", json={"text": "a woven yarn fabric", "label": "D"}, headers=HEADERS)
    assert response.status_code == 201
    assert response.json()["agreed"] is None and response.json()["prediction_id"] is None
    assert stored(server)[-1]["text"] == "a woven yarn fabric"


@pytest.mark.parametrize(
    "case,body,headers,expected",
    [
        ("unknown section", {"text": "a text", "label": "Z"}, HEADERS, 422),
        ("class without its second digit", {"text": "a text", "label": "G6"}, HEADERS, 422),
        ("subclass with a group", {"text": "a text", "label": "G06F 3/048"}, HEADERS, 422),
        ("subclass too long", {"text": "a text", "label": "G06FF"}, HEADERS, 422),
        ("class of no section", {"text": "a text", "label": "Z01"}, HEADERS, 422),
        ("section id out of range", {"text": "a text", "label": 12}, HEADERS, 422),
        ("no label", {"text": "a text"}, HEADERS, 422),
        ("neither id nor text", {"label": "A"}, HEADERS, 422),
        ("empty text", {"text": " ", "label": "A"}, HEADERS, 422),
        ("unknown prediction id", {"prediction_id": "0" * 32, "label": "A"}, HEADERS, 404),
        ("label and codes in two sections", {"text": "a text", "label": "H", "codes": ["G06F 3/00"]}, HEADERS, 422),
        ("a subgroup in codes", {"text": "a text", "codes": ["G06F 3/00", "G06F 3/048"]}, HEADERS, 422),
        ("an unknown code in codes", {"text": "a text", "codes": ["G06F", "Z01"]}, HEADERS, 422),
        ("a code that is not a string", {"text": "a text", "codes": ["G06F", 6]}, HEADERS, 422),
        ("codes as one string", {"text": "a text", "codes": "G06F"}, HEADERS, 422),
        ("no codes in the list", {"text": "a text", "codes": []}, HEADERS, 422),
        ("21 codes", {"text": "a text", "codes": [f"G06F {i}/00" for i in range(1, 22)]}, HEADERS, 422),
        ("null codes and no label", {"text": "a text", "codes": None}, HEADERS, 422),
        ("wrong key", {"text": "a text", "label": "A"}, {"X-API-Key": "not-the-key"}, 401),
        ("missing key", {"text": "a text", "label": "A"}, {}, 401),
        ("wrong key and bad section", {"text": "a text", "label": "Z"}, {"X-API-Key": "nope"}, 401),
    ],
)
def test_refused_feedback_gets_a_4xx_and_stores_nothing(server, case, body, headers, expected):
    before = len(stored(server))
    response = httpx.post(server.url + "/feedback", json=body, headers=headers)
    assert response.status_code == expected, response.text
    assert "detail" in response.json()
    assert len(stored(server)) == before


def test_a_bad_code_is_named_in_the_422(server):
    response = httpx.post(server.url + "/feedback", json={"text": "a text", "label": "G6"}, headers=HEADERS)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "label"] and "G06F" in error["msg"] and "'G6'" in error["msg"]


def test_a_class_or_subclass_is_stored_with_its_section(server):
    prediction = predict(server, "an optical sensor measuring a clock")
    response = httpx.post(server.url + "/feedback", json={"prediction_id": prediction["id"], "label": "g06f"}, headers=ALICE)
    assert response.status_code == 201
    ack = response.json()
    assert (ack["label"], ack["code"], ack["agreed"]) == ("G", "G06F", prediction["label"] == "G")
    row = FeedbackStore(server.db).get(ack["feedback_id"])
    assert (row["label"], row["code"], row["sender"], row["status"]) == ("G", "G06F", "alice", "accepted")
    [logged] = [r for r in server.log_records() if r.get("feedback_id") == ack["feedback_id"]]
    assert (logged["sender"], logged["label"], logged["feedback_status"], logged["status"]) == ("alice", "G06F", "accepted", 201)
    response = httpx.post(server.url + "/feedback", json={"text": "a woven fabric", "label": "D03"}, headers=HEADERS)
    row = FeedbackStore(server.db).get(response.json()["feedback_id"])
    assert (row["label"], row["code"], row["sender"]) == ("D", "D03", "default")  # the single PATENTCLF_API_KEY


def test_several_codes_down_to_main_groups_main_first(server, tmp_path):
    from typer.testing import CliRunner

    from patentclf.cli import app

    prediction = predict(server, "a touch screen with a camera")
    body = {"prediction_id": prediction["id"], "codes": ["g06f3/00", "H04N 5/00", "G06F", "G06F 3/00", "h04n"]}
    response = httpx.post(server.url + "/feedback", json=body, headers=ALICE)
    assert response.status_code == 201, response.text
    ack = response.json()
    codes = ["G06F 3/00", "H04N 5/00", "G06F", "H04N"]  # CPC's spelling, main first, each once
    assert (ack["label"], ack["code"], ack["codes"], ack["agreed"]) == ("G", "G06F 3/00", codes, prediction["label"] == "G")
    row = FeedbackStore(server.db).get(ack["feedback_id"])
    assert (row["label"], row["code"], row["codes"], row["text"]) == ("G", "G06F 3/00", codes, "a touch screen with a camera")
    [logged] = [r for r in server.log_records() if r.get("feedback_id") == ack["feedback_id"]]
    assert (logged["label"], logged["codes"]) == ("G06F 3/00", codes)

    # A label as well: in the main code's section (the codes decide the rest); a section id too.
    response = httpx.post(
        server.url + "/feedback", json={"text": "a valve", "label": "f", "codes": ["F16K 1/00", "F16K"]}, headers=UI
    )
    assert response.status_code == 201 and response.json()["codes"] == ["F16K 1/00", "F16K"]
    pending = response.json()["feedback_id"]
    response = httpx.post(server.url + "/feedback", json={"text": "a lens", "label": 6, "codes": ["G02B"]}, headers=ALICE)
    assert response.status_code == 201 and response.json()["code"] == "G02B"

    # The reviewer's list and review answer show them; the export lists them all for training.
    listed = httpx.get(server.url + "/feedback", params={"status": "pending"}, headers=BOB).json()["feedback"]
    assert [r["codes"] for r in listed if r["id"] == pending] == [["F16K 1/00", "F16K"]]
    reviewed = httpx.post(server.url + f"/feedback/{pending}/review", json={"accept": True}, headers=BOB).json()
    assert reviewed["feedback"][0]["codes"] == ["F16K 1/00", "F16K"]
    output = tmp_path / "export.jsonl"
    result = CliRunner().invoke(app, ["feedback", "export", "--db", str(server.db), "--output", str(output)])
    assert result.exit_code == 0, result.output
    exported = {row["source"]: row for row in map(json.loads, output.read_text().splitlines())}
    mine = exported[f"feedback:{ack['feedback_id']}"]
    assert (mine["section"], mine["class"], mine["subclass"], mine["ipc"]) == ("G", "G06", "G06F", "; ".join(codes))
    assert exported[f"feedback:{pending}"]["ipc"] == "F16K 1/00; F16K"
    split = load_split(str(output), "train")
    index = split.ids.index(f"feedback-{ack['feedback_id']}")
    assert split.codes[index] == ["G06F", "H04N"] and split.groups[index] == ["G06F 3/00", "H04N 5/00"]


@pytest.mark.parametrize(
    "body, where, message",
    [
        ({"codes": ["G06F", "G06F 3/048"]}, ["body", "codes", 1], "'G06F 3/048' is a subgroup: give its main group, G06F 3/00"),
        ({"codes": ["H04N", "G6"]}, ["body", "codes", 1], "not a CPC code: 'G6'"),
        ({"label": "H", "codes": ["G06F"]}, ["body"], "label 'H' is in section H but the main code 'G06F'"),
        ({"codes": ["G"] * 21}, ["body", "codes"], "at most 20"),
        ({}, ["body"], "give label or codes"),
    ],
)
def test_a_bad_list_of_codes_is_a_422_that_says_why(server, body, where, message):
    before = len(stored(server))
    response = httpx.post(server.url + "/feedback", json={"text": "a text", **body}, headers=HEADERS)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == where and message in error["msg"], error
    assert len(stored(server)) == before


def test_ui_feedback_waits_for_a_named_reviewer_before_export(server, tmp_path):
    from typer.testing import CliRunner

    from patentclf.cli import app

    def export(*flags) -> list[dict]:
        output = tmp_path / "export.jsonl"
        result = CliRunner().invoke(app, ["feedback", "export", "--db", str(server.db), "--output", str(output), *flags])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in output.read_text().splitlines()]

    prediction = predict(server, "a turbine with a lamp")
    response = httpx.post(server.url + "/feedback", json={"prediction_id": prediction["id"], "label": "F01D"}, headers=UI)
    assert response.status_code == 201 and response.json()["status"] == "pending"
    waiting = response.json()["feedback_id"]
    assert all(row["source"] != f"feedback:{waiting}" for row in export())
    assert any(row["source"] == f"feedback:{waiting}" for row in export("--include-pending"))

    # Only a reviewer's key lists or reviews; the UI's own key cannot accept its feedback.
    assert httpx.get(server.url + "/feedback", headers=ALICE).status_code == 403
    assert httpx.post(server.url + f"/feedback/{waiting}/review", json={"accept": True}, headers=UI).status_code == 403
    review_url = server.url + f"/feedback/{waiting}/review"
    assert httpx.post(review_url, json={"accept": True}, headers={"X-API-Key": "nope"}).status_code == 401
    listed = httpx.get(server.url + "/feedback", params={"status": "pending"}, headers=BOB).json()["feedback"]
    mine = [(r["text"], r["code"], r["codes"], r["sender"]) for r in listed if r["id"] == waiting]
    assert mine == [("a turbine with a lamp", "F01D", ["F01D"], "ui")]

    response = httpx.post(server.url + f"/feedback/{waiting}/review", json={"accept": True}, headers=BOB)
    assert response.status_code == 200
    [row] = response.json()["feedback"]
    assert (row["status"], row["reviewed_by"]) == ("accepted", "bob")
    assert httpx.post(server.url + f"/feedback/{waiting}/review", json={"accept": False}, headers=BOB).status_code == 409
    assert httpx.post(server.url + "/feedback/999999/review", json={"accept": True}, headers=BOB).status_code == 404
    [exported] = [row for row in export() if row["source"] == f"feedback:{waiting}"]
    assert exported | {"time": None} == {
        "id": f"feedback-{waiting}", "text": "a turbine with a lamp", "label": "F", "section": "F",
        "class": "F01", "subclass": "F01D", "ipc": "F01D",
        "source": f"feedback:{waiting}", "time": None, "sender": "ui", "status": "accepted", "reviewed_by": "bob",
    }  # fmt: skip

    # The CLI reviews too (whoever can reach the database is trusted, and names themselves).
    rejected = httpx.post(server.url + "/feedback", json={"text": "spam spam", "label": "A"}, headers=UI).json()["feedback_id"]
    runner = CliRunner()
    assert str(rejected) in runner.invoke(app, ["feedback", "list", "--db", str(server.db)]).output
    result = runner.invoke(app, ["feedback", "review", str(rejected), "--reject", "--reviewer", "carol", "--db", str(server.db)])
    assert result.exit_code == 0 and "rejected by carol" in result.output
    again = runner.invoke(app, ["feedback", "review", str(rejected), "--accept", "--reviewer", "carol", "--db", str(server.db)])
    assert again.exit_code == 1 and "already rejected" in again.output
    assert all(row["source"] != f"feedback:{rejected}" for row in export("--include-pending"))
    assert httpx.get(server.url + "/stats").json()["feedback"]["pending"] == 0


def test_non_json_feedback_is_422_and_stores_nothing(server):
    before = len(stored(server))
    response = httpx.post(server.url + "/feedback", content=b"label=A", headers={**HEADERS, "content-type": "application/json"})
    assert response.status_code == 422
    assert len(stored(server)) == before


def test_concurrent_feedback_is_stored_exactly_once_each(server):
    predictions = httpx.post(server.url + "/predict/batch", json={"texts": [f"sensor clock {i}" for i in range(30)]}).json()[
        "predictions"
    ]

    async def post_all():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        server.url + "/feedback",
                        json={"prediction_id": p["id"], "label": "G", "comment": f"writer {i}"},
                        headers=HEADERS,
                    )
                    for i, p in enumerate(predictions)
                )
            )

    responses = asyncio.run(post_all())
    assert [r.status_code for r in responses] == [201] * 30
    assert len({r.json()["feedback_id"] for r in responses}) == 30
    comments = [row["comment"] for row in stored(server) if (row["comment"] or "").startswith("writer ")]
    assert sorted(comments) == sorted(f"writer {i}" for i in range(30))
    rows = {row["prediction_id"]: row for row in stored(server) if (row["comment"] or "").startswith("writer ")}
    assert all(rows[p["id"]]["text"] == f"sensor clock {i}" for i, p in enumerate(predictions))


def test_acknowledged_feedback_survives_sigkill_and_restart(tiny_bundle, tmp_path):
    db = tmp_path / "feedback.db"
    options = dict(env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db)
    first = LiveServer(tiny_bundle, **options).start()
    try:
        acknowledged = []
        for i in range(5):
            prediction = predict(first, f"a bridge and a road {i}")
            response = httpx.post(
                first.url + "/feedback", json={"prediction_id": prediction["id"], "label": "E"}, headers=HEADERS
            )
            assert response.status_code == 201
            acknowledged.append(response.json()["feedback_id"])
    finally:
        first.kill()  # SIGKILL straight after the last 201: no shutdown code runs
    assert first.process.returncode == -9
    rows = FeedbackStore(db).rows()
    assert [row["id"] for row in rows] == acknowledged
    assert all(row["label"] == "E" and row["text"].startswith("a bridge and a road") for row in rows)

    with LiveServer(tiny_bundle, **options) as second:
        assert httpx.get(second.url + "/stats").json()["feedback"]["total"] == 5
        response = httpx.post(second.url + "/feedback", json={"text": "a door", "label": "E"}, headers=HEADERS)
        assert response.status_code == 201 and response.json()["feedback_id"] == 6
    assert len(FeedbackStore(db).rows()) == 6


def test_feedback_by_id_asks_for_the_text_when_the_server_no_longer_has_it(tiny_bundle, tmp_path):
    # No memory of recent texts and no logged texts: the id is known (predictions log) but not its text.
    options = dict(env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=tmp_path / "fb.db", recent_texts=0, log_texts=False)
    with LiveServer(tiny_bundle, **options) as live:
        prediction = predict(live, "a catalyst compound")
        response = httpx.post(live.url + "/feedback", json={"prediction_id": prediction["id"], "label": "C"}, headers=HEADERS)
        assert response.status_code == 422
        assert "text" in response.json()["detail"]
        assert FeedbackStore(tmp_path / "fb.db").count() == 0
        response = httpx.post(
            live.url + "/feedback",
            json={"prediction_id": prediction["id"], "text": "a catalyst compound", "label": "C"},
            headers=HEADERS,
        )
        assert response.status_code == 201
        assert response.json()["agreed"] == (prediction["label"] == "C")


def test_feedback_is_refused_when_the_server_has_no_key(tiny_bundle, tmp_path):
    with LiveServer(tiny_bundle, env={"PATENTCLF_API_KEY": ""}, feedback_db=tmp_path / "fb.db") as live:
        response = httpx.post(live.url + "/feedback", json={"text": "a door", "label": "E"}, headers={"X-API-Key": ""})
        assert response.status_code == 503 and "API key" in response.json()["detail"]
        assert FeedbackStore(tmp_path / "fb.db").count() == 0
