"""PostgreSQL restarts (a failover, a minor upgrade, ``pg_ctl restart``) under two live replicas: while
it is down, feedback and what reads the database are answered 503 with Retry-After and nothing else,
predictions keep being answered, writes come back once it is up, and every acknowledged row is there.

The server is this module's own (tests/pg_server.py), not the session's: stopping it must not disturb
other tests.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from patentclf.store.feedback import FeedbackStore
from tests.pg_server import PostgresServer, find_bindir
from tests.servers import LiveServer

API_KEY = "restart-key"
HEADERS = {"X-API-Key": API_KEY}
DOWN_S = 4.0


@pytest.fixture(scope="module")
def own_postgres():
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package, as .ci/run does")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


class Phase:
    """Which part of the run an answer belongs to: before, down (stopped), starting, after (started)."""

    def __init__(self) -> None:
        self.name = "before"


def record(answers: list, began: str, phase: Phase, replica: str, kind: str, response: httpx.Response) -> None:
    # A request sent in one phase and answered in the next (one committed just before the stop) is "edge":
    # only requests wholly inside the outage must be refused.
    name = began if began == phase.name else "edge"
    answers.append((name, replica, kind, response.status_code, "retry-after" in response.headers))


@pytest.mark.slow  # two replicas and a database restart: ~30 s on a busy 2-core machine
def test_postgres_restart_under_two_replicas(tiny_bundle, own_postgres):
    url = own_postgres.create_database()
    env = {"PATENTCLF_API_KEY": API_KEY, "PATENTCLF_DATABASE_URL": url}
    servers = {"a": LiveServer(tiny_bundle, env=env), "b": LiveServer(tiny_bundle, env=env)}
    phase, stop = Phase(), threading.Event()
    answers: list[tuple] = []  # (phase, replica, kind, status, has Retry-After)
    acknowledged: dict[int, str] = {}  # feedback id -> text
    predicted: dict[str, list[str]] = {"a": [], "b": []}  # prediction ids made on each replica
    errors: list[BaseException] = []

    def writer(name: str, tag: str) -> None:
        server, i = servers[name], 0
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                text, began = f"restart test {tag} {i}", phase.name
                response = client.post(server.url + "/feedback", json={"text": text, "label": "F"}, headers=HEADERS)
                record(answers, began, phase, name, "feedback", response)
                if response.status_code == 201:
                    acknowledged[response.json()["feedback_id"]] = text
                else:
                    time.sleep(0.05)
                i += 1

    def predictor(name: str) -> None:
        server, other = servers[name], "b" if name == "a" else "a"
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                began = phase.name
                response = client.post(server.url + "/predict", json={"text": f"a pump and a valve {time.monotonic()}"})
                record(answers, began, phase, name, "predict", response)
                if response.status_code == 200:
                    predicted[name].append(response.json()["id"])
                # Readers of the database: /stats, and feedback by an id the other replica made.
                began = phase.name
                record(answers, began, phase, name, "stats", client.get(server.url + "/stats"))
                if predicted[other]:
                    body, began = {"prediction_id": predicted[other][-1], "label": "F"}, phase.name
                    response = client.post(server.url + "/feedback", json=body, headers=HEADERS)
                    record(answers, began, phase, name, "feedback by id", response)
                    if response.status_code == 201:
                        acknowledged[response.json()["feedback_id"]] = None
                time.sleep(0.05)

    def guarded(target, *args) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - a transport error or a failed parse fails the test below
            errors.append(exc)

    for server in servers.values():
        server.start()
    jobs = [(writer, "a", "a1"), (writer, "a", "a2"), (writer, "b", "b1"), (predictor, "a"), (predictor, "b")]
    threads = [threading.Thread(target=guarded, args=job) for job in jobs]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: count(answers, "before", None, "feedback", 201) >= 20, "feedback before the restart")

        own_postgres.stop_server()  # "fast": open connections are closed, as a restart does
        phase.name = "down"
        time.sleep(DOWN_S)
        # The server takes connections a moment before `pg_ctl start` returns: from here on a write may
        # succeed, so the outage ("down") ends before the start is asked for.
        phase.name = "starting"
        own_postgres.start_server()
        started = time.monotonic()
        phase.name = "after"
        wait_for(
            lambda: all(count(answers, "after", name, "feedback", 201) >= 5 for name in servers), "feedback after the restart"
        )
        back_s = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(60)
        check(servers, answers, acknowledged, errors, back_s, url)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        for server in servers.values():
            server.stop()


def check(servers: dict, answers: list, acknowledged: dict, errors: list, back_s: float, url: str) -> None:
    assert errors == []

    down = [a for a in answers if a[0] == "down"]
    for name in servers:  # both replicas met the outage and answered 503 with Retry-After, nothing else
        assert {(kind, status) for _, replica, kind, status, _ in down if replica == name and kind == "feedback"} == {
            ("feedback", 503)
        }
        assert any(kind == "predict" and status == 200 for _, replica, kind, status, _ in down if replica == name)
    unexpected = [a for a in answers if a[3] not in {200, 201} and not (a[3] == 503 and a[4])]
    assert unexpected == []
    assert [a for a in answers if a[2] == "predict" and a[3] != 200] == []  # predictions never fail
    assert [a for a in answers if a[0] == "down" and a[2] != "predict" and a[3] != 503] == []
    assert back_s < 60  # 0.5 s on a quiet machine; the bound leaves room for a loaded CI machine

    stored = {row["id"]: row["text"] for row in FeedbackStore(url).rows()}
    assert set(acknowledged) <= set(stored)
    assert {i: stored[i] for i, text in acknowledged.items() if text} == {i: t for i, t in acknowledged.items() if t}
    # The predictions answered during the outage were kept and written once the database was back.
    predictions = sum(1 for a in answers if a[2] == "predict" and a[3] == 200)
    wait_for(lambda: httpx.get(servers["a"].url + "/stats").json()["predictions_total"] == predictions, "the log flushed")


def count(answers: list, phase: str, replica: str | None, kind: str, status: int) -> int:
    return sum(1 for a in answers if a[0] == phase and replica in (None, a[1]) and a[2] == kind and a[3] == status)


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
