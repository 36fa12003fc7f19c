"""Tracing in a real browser: each answer links to its MLflow trace; thumbs up becomes MLflow feedback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ChorusServer
from test_browser_history import _add_user, _login, _send

READ_TRACES = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("chorus")
out = []
for trace in client.search_traces(locations=[experiment.experiment_id]):
    full = client.get_trace(trace.info.trace_id)
    out.append({"id": trace.info.trace_id, "user": trace.info.trace_metadata.get("mlflow.trace.user"),
                "spans": sorted(s.name for s in full.data.spans),
                "feedback": [(a.name, a.value, a.source.source_id) for a in full.info.assessments]})
print(json.dumps(out))
"""


def _traces(server: ChorusServer) -> list[dict[str, Any]]:
    uri = f"sqlite:///{Path(server.env['CHORUS_HOME']) / 'mlflow.db'}"
    result = subprocess.run([sys.executable, "-c", READ_TRACES, uri], capture_output=True, text=True,
                            timeout=120, env=server.env)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_an_answer_links_to_its_trace_and_feedback_reaches_it(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    workdir = tmp_path / "srv"
    workdir.mkdir(parents=True)
    server = ChorusServer(workdir, env={"CHORUS_OFFLINE_TOKEN_DELAY": "0", "CHORUS_TRACING": "true"})
    _add_user(server, "erin", "erin-password")
    server.start()
    try:
        context = browser.new_context()
        page = context.new_page()
        _login(page, server, "erin", "erin-password")
        _send(page, "What time is it in Tokyo?")
        page.get_by_text("Asia/Tokyo", exact=False).first.wait_for(timeout=30_000)
        page.get_by_text("tokens and cost", exact=False).first.click()
        link = page.get_by_role("link", name="trace in MLflow")
        link.wait_for(timeout=10_000)
        href = link.get_attribute("href")
        assert href and href.startswith("/chorus/trace/")

        for _ in range(60):  # the trace is written in the background
            traces = _traces(server)
            if traces:
                break
            page.wait_for_timeout(1_000)
        assert len(traces) == 1 and traces[0]["user"] == "erin"
        assert {"turn", "select speaker", "agent assistant", "tool current_time"} <= set(traces[0]["spans"])
        response = page.request.get(server.url + href, max_redirects=0)
        assert response.status in (302, 307) and traces[0]["id"] in response.headers["location"]

        page.locator(".lucide-thumbs-up").first.click()
        submit = page.get_by_role("button", name="Submit feedback")
        try:  # Chainlit asks for an optional comment in a dialog
            submit.wait_for(timeout=5_000)
            submit.click()
        except Exception:
            pass
        page.screenshot(path=str(artifacts / "feedback.png"))
        for _ in range(30):
            feedback = _traces(server)[0]["feedback"]
            if feedback:
                break
            page.wait_for_timeout(1_000)
        assert feedback == [["user_feedback", True, "erin"]]
        context.close()
    finally:
        server.stop()
