"""Shared fixtures: a real Chorus server, a real headless Chromium, and the no-real-model guard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Tests never reach a real model provider: the model client refuses anything but loopback.
os.environ["CHORUS_FORBID_REAL_MODELS"] = "1"
# Tests that do not choose a data directory get a throwaway one, never the checkout's .chorus/.
os.environ["CHORUS_HOME"] = tempfile.mkdtemp(prefix="chorus-test-home-")
# Tracing is on by default for users; tests that are about it (test_tracing.py, the tracing
# browser test) turn it on, the rest do not pay for an MLflow store in the background.
os.environ["CHORUS_TRACING"] = "false"
# Installed plugin packages (the first-party ones in plugins/, or whatever a developer has in the
# environment) stay out of the core tests: only the built-ins load unless a test asks for more
# with WITH_INSTALLED_PLUGINS (or its own CHORUS_PLUGINS).
os.environ["CHORUS_PLUGINS"] = "chorus"

from workers import free_port, stop_process  # free_port: other test modules import it from here too

import chorus  # noqa: F401  (applies the offline switches before litellm is imported)

ROOT = Path(__file__).resolve().parents[1]
# For a test about the first-party plugin packages: the settings that load them with the built-ins.
FIRST_PARTY_PLUGINS = "chorus,chorus-mathematician,chorus-music-store"
WITH_INSTALLED_PLUGINS = {"CHORUS_PLUGINS": FIRST_PARTY_PLUGINS}
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the local PostgreSQL server (dropped afterwards), as an async URL.

    Skips when no server answers at CHORUS_TEST_POSTGRES_URL; under CI=true that is a failure.
    """
    import sqlalchemy as sa
    from workers import POSTGRES_ADMIN, create_database, drop_database

    try:
        url = create_database()
    except (OSError, TimeoutError, sa.exc.DBAPIError, sa.exc.InterfaceError) as exc:
        message = (f"PostgreSQL is not reachable at {POSTGRES_ADMIN} ({type(exc).__name__}: {exc}); "
                   "set CHORUS_TEST_POSTGRES_URL")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield url
    finally:
        drop_database(url)


CHINOOK_CANDIDATES = [Path(p) for p in filter(None, [os.environ.get("CHINOOK_PATH")])] + [
    ROOT.parent / "shared" / "data" / "chinook.sqlite", Path("/work/shared/data/chinook.sqlite")]


def chinook_path() -> Path:
    """The real Chinook sample database (``../shared/data/chinook.sqlite``, or ``CHINOOK_PATH``).

    Skips when it is absent; under CI=true that is a failure.
    """
    for path in CHINOOK_CANDIDATES:
        if path.is_file():
            return path
    message = f"the Chinook database is not at any of {[str(p) for p in CHINOOK_CANDIDATES]}; set CHINOOK_PATH"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_chromium() -> str:
    """The Chromium binary; skip (fail in CI) when Debian's chromium is not installed."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = (
        f"browser tests need Debian's chromium at {CHROMIUM} "
        "(`apt-get install chromium`; the test command installs it when run as root)"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class ChorusServer:
    """``chorus run`` in a subprocess, in its own working directory and data directory.

    It serves this repository's deployment (the teams in ``agents/``, which name the first-party
    plugins' agents), so it loads those plugins unless ``env`` sets ``CHORUS_PLUGINS`` itself.
    """

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log = workdir / "server.log"
        self.env = {
            **os.environ,
            "CHORUS_HOME": str(workdir / "data"),
            "CHORUS_AGENTS_DIR": str(ROOT / "agents"),
            "CHORUS_KNOWLEDGE_DIR": str(ROOT / "knowledge"),
            "CHORUS_FORBID_REAL_MODELS": "1",
            **WITH_INSTALLED_PLUGINS,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ChorusServer:
        import httpx

        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chorus.cli", "run", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chorus run exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/project/settings", timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"chorus run did not answer within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusServer]:
    """One real Chorus server (offline model, paced like a real stream) for the whole session."""
    srv = ChorusServer(tmp_path_factory.mktemp("server"), env={"CHORUS_OFFLINE_TOKEN_DELAY": "0.02"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A real headless Chromium (Debian's), driven by Playwright; never a downloaded browser.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread
    while it is open, which would break the asyncio tests collected after it.
    """
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
