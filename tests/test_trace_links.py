"""The page's "trace in MLflow" link leads to the MLflow UI that is actually serving Chorus's traces.

``chorus mlflow --port N`` records where it serves in the data directory; the chat server reads that
at every link, so a UI started (or moved) after the server is followed at once. CHORUS_MLFLOW_UI_URL
overrides everything; traces sent to a tracking server link to that server's own UI.
(The browser test ``tests/e2e/test_browser_page_fixes.py`` follows a real link to a real UI.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chorus.settings import Settings
from chorus.tracing import UI_RECORD, Tracer, forget_ui, record_ui, recorded_ui


def _tracer(home: Path, **settings: object) -> Tracer:
    return Tracer(Settings(home=home, **settings), "test")  # type: ignore[arg-type]


def test_without_chorus_mlflow_running_the_link_is_the_default_port(tmp_path: Path) -> None:
    assert _tracer(tmp_path).ui_url() == "http://127.0.0.1:5000"


def test_the_link_follows_the_port_chorus_mlflow_serves_on_and_its_restarts(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path)  # made before the UI started, as a running chat server is
    record_ui(tmp_path, "127.0.0.1", 5110)
    assert tracer.ui_url() == "http://127.0.0.1:5110"
    assert tracer.ui_link("tr-1", tracer.ui_url()).startswith("http://127.0.0.1:5110/#/experiments/")
    record_ui(tmp_path, "localhost", 5120)  # restarted elsewhere: the next link follows
    assert tracer.ui_url() == "http://localhost:5120"
    forget_ui(tmp_path)  # stopped
    assert not (tmp_path / UI_RECORD).exists()
    assert tracer.ui_url() == "http://127.0.0.1:5000"


def test_a_ui_on_every_interface_is_reached_by_the_name_the_browser_used(tmp_path: Path) -> None:
    record_ui(tmp_path, "0.0.0.0", 5110)
    assert _tracer(tmp_path).ui_url("chat.example.com") == "http://chat.example.com:5110"
    record_ui(tmp_path, "::1", 5110)
    assert _tracer(tmp_path).ui_url("chat.example.com") == "http://[::1]:5110"


def test_a_record_left_by_a_killed_chorus_mlflow_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record_ui(tmp_path, "127.0.0.1", 5110)
    data = json.loads((tmp_path / UI_RECORD).read_text())
    (tmp_path / UI_RECORD).write_text(json.dumps({**data, "pid": dead.pid}))
    assert recorded_ui(tmp_path) is None
    assert _tracer(tmp_path).ui_url() == "http://127.0.0.1:5000"


def test_forgetting_leaves_a_newer_chorus_mlflows_record(tmp_path: Path) -> None:
    record_ui(tmp_path, "127.0.0.1", 5110)
    data = json.loads((tmp_path / UI_RECORD).read_text())
    (tmp_path / UI_RECORD).write_text(json.dumps({**data, "pid": os.getppid()}))  # another live process
    forget_ui(tmp_path)
    assert _tracer(tmp_path).ui_url() == "http://127.0.0.1:5110"


def test_chorus_mlflow_ui_url_overrides_and_a_tracking_server_links_to_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record_ui(tmp_path, "127.0.0.1", 5110)
    monkeypatch.setenv("CHORUS_MLFLOW_UI_URL", "https://mlflow.example.com/")
    assert _tracer(tmp_path).ui_url() == "https://mlflow.example.com"
    monkeypatch.delenv("CHORUS_MLFLOW_UI_URL")
    tracer = _tracer(tmp_path, mlflow_tracking_uri="http://mlflow-host:5000")
    assert tracer.ui_url() == "http://mlflow-host:5000"


def test_chorus_mlflow_records_where_it_serves_and_removes_it_when_stopped(tmp_path: Path) -> None:
    """The command itself (its `mlflow server` replaced by a process that just waits)."""
    home = tmp_path / "home"
    fake = tmp_path / "bin"
    fake.mkdir()
    # A `python -m mlflow` that sleeps: the command runs `sys.executable -m mlflow server ...`.
    (fake / "mlflow").mkdir()
    (fake / "mlflow" / "__init__.py").write_text("")
    (fake / "mlflow" / "__main__.py").write_text("import time\ntime.sleep(60)\n")
    env = {**os.environ, "CHORUS_HOME": str(home), "PYTHONPATH": str(fake)}
    proc = subprocess.Popen([sys.executable, "-m", "chorus.cli", "mlflow", "--port", "5110"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if (home / UI_RECORD).exists():
                break
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode() if proc.stdout else "exited")
            time.sleep(0.1)
        assert _tracer(home).ui_url() == "http://127.0.0.1:5110"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert not (home / UI_RECORD).exists()
    assert _tracer(home).ui_url() == "http://127.0.0.1:5000"
