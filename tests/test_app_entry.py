"""``chainlit run app.py`` from a clone serves the same app as ``chorus run``: the same settings,
teams, routes and answers, both made by :func:`chorus.web.create_app`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from chat_client import ChatClient
from conftest import ROOT, ChorusServer
from workers import stop_process


class ChainlitServer(ChorusServer):
    """Chainlit's own command on the repository's app.py, as a Chainlit user would start it."""

    def start(self, timeout: float = 60) -> ChainlitServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chainlit", "run", str(ROOT / "app.py"), "--headless", "--port", str(self.port),
                 "--host", "127.0.0.1"],
                cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chainlit run exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/chorus/status", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        stop_process(self.proc)
        raise RuntimeError(f"chainlit run did not answer within {timeout}s:\n{self.log.read_text()}")


async def test_chainlit_run_app_py_serves_what_chorus_run_serves(tmp_path: Path) -> None:
    ours = ChorusServer(tmp_path / "chorus-run").start()
    theirs = ChainlitServer(tmp_path / "chainlit-run").start()
    try:
        def seen(server: ChorusServer) -> tuple[object, ...]:
            status = httpx.get(server.url + "/chorus/status", timeout=10).json()
            settings = httpx.get(server.url + "/project/settings", params={"language": "en-US"}, timeout=10).json()
            profiles = [(p["name"], p.get("default")) for p in settings.get("chatProfiles", [])]
            return status, settings["ui"]["name"], settings["ui"].get("custom_js"), profiles

        assert seen(ours) == seen(theirs)
        assert seen(ours)[2] == "/chorus/static/chorus.js" and len(seen(ours)[3]) >= 2
        answers = []
        for server in (ours, theirs):
            chat = await ChatClient(server).connect()
            try:
                reply = await chat.answer_to("What is 12 * (3 + 4)?", "84")
                answers.append((reply["name"], reply["output"]))
            finally:
                await chat.sio.disconnect()
        assert answers[0] == answers[1] and answers[0][0] == "mathematician"
        assert (await _avatar(theirs)) == (await _avatar(ours))
    finally:
        theirs.stop()
        ours.stop()


async def _avatar(server: ChorusServer) -> bytes:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(server.url + "/avatars/mathematician")
        assert answer.status_code == 200
        return answer.content
