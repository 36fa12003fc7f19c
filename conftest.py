"""Test lanes, for every test under tests/ and plugins/ (README: "Running a lane").

- ``browser``: drives headless Chromium (tests/e2e/);
- ``services``: needs the PostgreSQL server (or nginx and several workers);
- ``quality``: ruff, mypy and import-linter over the code.

The README's test command runs every lane; ``-m "not browser and not services and not quality"``
is the quick lane for a developer.
"""

from __future__ import annotations

import pytest

_SERVICE_MODULES = {"test_workers.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if "e2e" in path.parts:
            item.add_marker(pytest.mark.browser)
        if path.name == "test_quality.py":
            item.add_marker(pytest.mark.quality)
        if path.name in _SERVICE_MODULES or "postgres" in item.name.lower():
            item.add_marker(pytest.mark.services)
