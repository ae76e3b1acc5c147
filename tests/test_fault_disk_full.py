"""The disk fills under the SQLite default: the service runs with its database on a small ``tmpfs``
(``mount -t tmpfs -o size=4m``, so root, or CAP_SYS_ADMIN, is needed), a filler file takes the rest of
the space, and then: feedback is answered 503 with Retry-After (not a 500, never a dead process),
predictions are still answered, nothing acknowledged is lost, and writes (feedback and the predictions
log) resume once the filler is removed."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from patentclf.store.feedback import FeedbackStore

from .servers import LiveServer

API_KEY = "disk-key"
HEADERS = {"X-API-Key": API_KEY}
TEXT = "a pump, a valve and a pipe " * 100  # ~2.7 kB: rows that take new pages


@pytest.fixture
def small_disk(tmp_path) -> Path:
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the suite as root)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has no space left."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:  # the last few blocks, a page at a time
            while True:
                out.write(chunk[:4096])
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.slow  # a server, a filled disk and a recovery: ~30 s on a busy 2-core machine
def test_full_disk_answers_503_loses_nothing_and_recovers(tiny_bundle, small_disk):
    db = small_disk / "feedback.db"
    server = LiveServer(tiny_bundle, env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db).start()
    answers: list[tuple[str, str, int, bool]] = []  # (phase, kind, status, has Retry-After)
    acknowledged: dict[int, str] = {}
    phase, stop, errors = ["before"], threading.Event(), []

    def writer(tag: str) -> None:
        i = 0
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                text = f"{tag} {i} {TEXT}"
                response = client.post(server.url + "/feedback", json={"text": text, "label": "F"}, headers=HEADERS)
                answers.append((phase[0], "feedback", response.status_code, "retry-after" in response.headers))
                if response.status_code == 201:
                    acknowledged[response.json()["feedback_id"]] = text
                i += 1
                time.sleep(0.02)

    def predictor() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                response = client.post(server.url + "/predict", json={"text": f"a pump {time.monotonic()}"})
                answers.append((phase[0], "predict", response.status_code, "retry-after" in response.headers))
                response = client.get(server.url + "/stats")
                answers.append((phase[0], "stats", response.status_code, "retry-after" in response.headers))
                time.sleep(0.05)

    def guarded(target, *args) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - a transport error (a dead server) fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=job) for job in ((writer, "w1"), (writer, "w2"), (predictor,))]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: sum(a[:3] == ("before", "feedback", 201) for a in answers) >= 10, "feedback before the disk fills")

        filler = fill(small_disk)
        phase[0] = "full"
        # Rows may still fit in pages the database already holds; then every write is refused.
        wait_for(lambda: last_feedback(answers, 10) == [503] * 10, "ten 503 in a row on the full disk")
        time.sleep(2)  # and it stays so, with the predictions log failing to flush too
        assert server.process.poll() is None
        assert httpx.get(server.url + "/ready").status_code == 200

        filler.unlink()
        phase[0] = "freed"
        wait_for(lambda: sum(a[:3] == ("freed", "feedback", 201) for a in answers) >= 10, "feedback after space is freed")
        stop.set()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert server.process.poll() is None  # it never died

        full = [a for a in answers if a[0] == "full" and a[1] == "feedback"]
        assert {status for _, _, status, _ in full} <= {201, 503} and 503 in {s for _, _, s, _ in full}
        assert [a for a in answers if a[2] not in (200, 201) and not (a[2] == 503 and a[3])] == []
        assert [a for a in answers if a[1] == "predict" and a[2] != 200] == []  # predictions never fail

        # Every acknowledged row is in the database, and the predictions log caught up.
        predictions = sum(1 for a in answers if a[1] == "predict" and a[2] == 200)
        wait_for(lambda: httpx.get(server.url + "/stats").json()["predictions_total"] == predictions, "the log flushed")
        stored = {row["id"]: row["text"] for row in FeedbackStore(db).rows()}
        assert {i: stored.get(i) for i in acknowledged} == acknowledged
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()


def last_feedback(answers: list, n: int) -> list[int]:
    return [a[2] for a in answers if a[1] == "feedback"][-n:]


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
