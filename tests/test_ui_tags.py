"""The Tags page, run by ``AppTest`` against the real service on loopback (tiny model): a tag set fitted
from an uploaded file, its figures, made live, then carried by the Classify page's answer and its
feedback form; bad uploads refused on the page before anything is sent."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from patentclf.corpus.inputs import DataError
from patentclf.store.feedback import FeedbackStore
from patentclf.ui.batch import MAX_ROWS
from patentclf.ui.tags import FIT, read_tag_examples
from tests.conftest import toy_rows

from .servers import API_KEY, run_api

TIMEOUT = 60
# The toy sections' rows as a user's categories (as tests/test_tags.py): the other rows carry no tag.
TAG_OF = {"H": "electrical", "G": "measuring"}


def examples_csv(n: int = 32, seed: int = 5) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["id", "text", "tags"])
    writer.writeheader()
    for row in toy_rows(n, seed):
        writer.writerow({"id": row["id"], "text": row["text"], "tags": TAG_OF.get(row["section"], "")})
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def api(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui-tags-api")
    # The UI's key (named default) is a reviewer's, as fitting needs; fitted sets go beside the database.
    with run_api(tiny_bundle, folder, env={"PATENTCLF_REVIEWERS": '["default"]'}) as live:
        live.db = folder / "feedback.db"
        yield live


@pytest.fixture
def ui_env(api, monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_URL", api.url)
    monkeypatch.setenv("PATENTCLF_API_KEY", API_KEY)
    monkeypatch.delenv("PATENTCLF_UI_TIMEOUT", raising=False)
    return api


def page(module: str = "tags") -> AppTest:
    at = AppTest.from_string(f"from patentclf.ui.{module} import render\nrender()", default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def upload(at: AppTest, name: str, content: bytes, set_name: str = "toy") -> AppTest:
    at.text_input(key="tag_set_name").input(set_name)
    at.file_uploader(key="tag_examples").set_value((name, content, "text/csv"))
    return next(b for b in at.button if b.label == "Fit tag set").click().run()


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def test_the_page_fits_a_set_from_an_upload_shows_its_figures_and_makes_it_live(ui_env):
    at = page()
    assert "No tag set is live" in at.info[0].value
    upload(at, "examples.csv", examples_csv())
    assert not at.exception and not at.error, [e.value for e in at.error]
    deadline = time.monotonic() + TIMEOUT
    while at.session_state[FIT]["status"] == "running":  # the fragment polls the job; a rerun does the same
        assert time.monotonic() < deadline, at.session_state[FIT]
        time.sleep(0.3)
        at.run()
    job = at.session_state[FIT]
    assert job["status"] == "fitted", job
    assert not at.exception and not at.error
    assert "#### toy: fitted on 32 examples" in markdown(at)
    [table] = [m for m in markdown(at) if "<table" in m]
    for tag in ("electrical", "measuring"):
        figures = next(t for t in job["tag_set"]["tags"] if t["name"] == tag)
        assert f">{tag}<" in table and f">{figures['f1']:.2f}<" in table and f">{figures['examples']}<" in table
    assert all(h in table for h in ("Examples", "Threshold", "Precision", "Recall", "F1"))
    few = at.warning[0].value  # 32 rows over eight sections: 4 examples a tag
    assert few.startswith("Few examples: ") and "electrical (4)" in few and "measuring (4)" in few

    at.button(key="make_live").click().run()
    assert not at.exception and not at.error
    assert "toy is live" in at.success[0].value
    assert "##### toy" in markdown(at)  # now among the live sets, from /model
    assert [s["name"] for s in httpx.get(ui_env.url + "/model", timeout=10).json()["tags"]] == ["toy"]

    # The Classify page, for a patent the live set tags: the answer's tags in a table, and the feedback
    # form offers the live sets' tags, sent with the correction.
    texts = [r["text"] for r in toy_rows(16, seed=9) if r["section"] in TAG_OF]
    answers = httpx.post(ui_env.url + "/predict/batch", json={"texts": texts}, timeout=30).json()["predictions"]
    text = next(t for t, a in zip(texts, answers) if a["tags"])
    at = page("classify")
    at.text_area(key="text").input(text)
    next(b for b in at.button if b.label == "Classify").click().run()
    assert not at.exception and not at.error
    answer = at.session_state["prediction"]
    assert answer["tags"] and "#### Your tags" in markdown(at)
    [tags] = [m for m in markdown(at) if "Tag set" in m]
    assert all(
        f">{t['set']}<" in tags and f">{t['name']}<" in tags and f">{t['probability']:.1%}<" in tags for t in answer["tags"]
    )
    assert sorted(at.multiselect(key="feedback_tags").options) == ["toy / electrical", "toy / measuring"]
    at.multiselect(key="feedback_tags").select(("toy", "electrical"))
    next(b for b in at.button if b.label == "Send feedback").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "tags toy / electrical" in at.success[0].value
    stored = {r["prediction_id"]: r for r in FeedbackStore(ui_env.db).rows()}[answer["id"]]
    assert stored["tags"] == [{"set": "toy", "name": "electrical"}]

    # The batch tab: a tags column beside the answer, as in the downloads.
    at = page("classify")
    content = "id,text\n" + "".join(f"r{i},{t}\n" for i, t in enumerate(texts[:3]))
    at.file_uploader(key="batch_file").set_value(("three.csv", content.encode(), "text/csv")).run()
    next(b for b in at.button if b.label == "Classify all").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.columns)[:5] == ["id", "label", "name", "confidence", "tags"]
    assert table["tags"].iloc[texts.index(text)].startswith("toy/")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.csv", b"id,body,tags\n1,x,a\n", "notes.csv: no text column"),
        ("plain.csv", b"id,text\n1,a lamp\n2,a loom\n", "plain.csv: no 'tags' column"),
        ("gap.csv", b"text,tags\na lamp,a\na loom,a;;b\na pump,\n", "gap.csv: row 2: an empty tag name in 'a;;b'"),
        ("one.csv", b"text,tags\na lamp,a\na loom,b\na pump,b\na door,\n", "one.csv: row 1: tag 'a' has 1 example"),
        ("blank.csv", b"text,tags\na lamp,a\n,a\na pump,\n", "blank.csv: row 2: empty text"),
    ],
)
def test_a_file_the_fit_cannot_read_is_refused_on_the_page_before_sending(ui_env, name, content, message):
    at = upload(page(), name, content, set_name=f"bad-{name.replace('.', '-')}")
    assert not at.exception
    assert "Cannot fit on this file" in at.error[0].value and message in at.error[0].value, at.error[0].value
    assert FIT not in at.session_state


def test_upload_rows_become_the_apis_examples_title_and_abstract_joined_ids_kept_where_given():
    content = b'{"id": "US1", "title": "Lamp", "abstract": "A lamp.", "tags": "light; home"}\n'
    content += b'{"title": "Loom", "abstract": "A loom.", "tags": ["light", "home"]}\n{"title": "Pump", "abstract": "A pump."}\n'
    rows = read_tag_examples("mine.jsonl", content)
    assert [r.get("id") for r in rows] == ["US1", None, None]
    assert [r["tags"] for r in rows] == [["light", "home"], ["light", "home"], []]
    assert rows[0]["text"].startswith("Lamp") and "A lamp." in rows[0]["text"]
    with pytest.raises(DataError, match="no row has a tag"):
        read_tag_examples("none.csv", b"text,tags\na,\nb,\n")
    many = b"text,tags\n" + b"".join(b"a lamp %d,light\n" % i for i in range(MAX_ROWS + 1))
    with pytest.raises(DataError, match="use `patentclf tags fit --examples` for more"):
        read_tag_examples("many.csv", many)


def test_without_a_reviewers_key_the_page_asks_for_one(api, monkeypatch):
    monkeypatch.setenv("PATENTCLF_API_URL", api.url)
    monkeypatch.delenv("PATENTCLF_API_KEY", raising=False)
    at = page()
    assert "needs a reviewer's API key" in at.info[-1].value
    assert "reviewer_key_input" in [t.key for t in at.text_input] and "tag_set_name" not in [t.key for t in at.text_input]
    # A key that is not a reviewer's, typed in: refused when fitting, and the page asks again.
    at.text_input(key="reviewer_key_input").input("wrong-key").run()
    at = upload(at, "examples.csv", examples_csv(16), set_name="nokey")
    assert not at.exception
    assert "refused" in at.info[-1].value and "reviewer_key_input" in [t.key for t in at.text_input]
