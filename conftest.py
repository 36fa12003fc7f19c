"""Test lanes, for every test under tests/ and plugins/ (README: "Running a lane").

- ``browser``: drives headless Chromium (tests/e2e/);
- ``services``: needs the PostgreSQL server (or nginx and several workers);
- ``quality``: ruff, mypy and import-linter over the code.

The README's test command runs every lane; ``-m "not browser and not services and not quality"``
is the quick lane for a developer.

Tests that race a real browser or a server process against the clock (the browser lane and the
modules in ``_RACING_MODULES``) get one more try when they fail (pytest-rerunfailures): on a loaded
two-core machine a page can miss a deadline that it meets on the next try. The summary lists every
rerun; a test that fails twice fails the run.
"""

from __future__ import annotations

import pytest

_SERVICE_MODULES = {"test_workers.py"}
# Server processes driven over sockets with deadlines (queues, stops, kills, bursts).
_RACING_MODULES = {"test_socket.py", "test_burst_and_shutdown.py", "test_shutdown.py", "test_runs.py",
                   "test_workers.py", "test_provider_hang.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if "e2e" in path.parts:
            item.add_marker(pytest.mark.browser)
        if path.name == "test_quality.py":
            item.add_marker(pytest.mark.quality)
        if path.name in _SERVICE_MODULES or "postgres" in item.name.lower():
            item.add_marker(pytest.mark.services)
        if "e2e" in path.parts or path.name in _RACING_MODULES:
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
