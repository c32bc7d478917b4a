"""``svqtui --replay FILE --once --json --at T`` and ``--replay FILE --log
--csv`` print what the live modes print, from the recording (real
subprocesses, over a real recording of the demo)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from svqtui.outputs.json_doc import snapshot_document
from svqtui.recording.batch import BadTime, parse_at
from tests.support.recording import Recorded, record_demo


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_demo(tmp_path_factory.mktemp("rec"), 20)


def svqtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svqtui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_once_json_at_is_the_document_of_the_nearest_frame(recorded: Recorded) -> None:
    """--once --json --at 12.4s prints the JSON document of frame 12 (what --once --json
    printed live)."""
    done = svqtui("--replay", str(recorded.path), "--once", "--json", "--at", "12.4s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(json.dumps(snapshot_document(recorded.live[12])))


def test_log_csv_prints_every_frame(recorded: Recorded) -> None:
    """--log --csv: the header, then one row per recorded frame with the rates."""
    done = svqtui("--replay", str(recorded.path), "--log", "--csv", "--at", "5")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0][0] == "time" and len(rows) == 1 + 15
    assert float(rows[1][1]) == pytest.approx(
        sum(r.kick_rate for r in recorded.live[5].rows_of("demo:web01/net0")), abs=0.05
    )


def test_usage_errors_are_one_line() -> None:
    """--at without --replay, and a TIME that is not one, are one line each."""
    done = svqtui("--once", "--at", "3")
    assert done.returncode == 2 and "--at goes with --replay" in done.stderr
    with pytest.raises(BadTime):
        parse_at("soon")
    assert parse_at("1500ms") == 1.5 and parse_at("2m") == 120
