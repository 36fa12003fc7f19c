"""Chorus's pytest plugin: the fixtures of :mod:`chorus.testing`, for any project with Chorus installed.

Registered through the ``pytest11`` entry point ``chorus`` (``-p no:chorus`` turns it off). It
only defines fixtures: none is autouse, and loading it sets no environment variable and imports
nothing of Chorus beyond the ``chorus`` package itself (whose import fills in its offline switches,
such as ``LITELLM_LOCAL_MODEL_COST_MAP``, where they are unset); the rest loads when a test asks
for a fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from chorus.testing._factory import ChorusFactory


@pytest.fixture
def make_chorus(tmp_path: Path) -> Iterator[ChorusFactory]:
    """Load a Chorus for this test: ``make_chorus(plugins=[my_plugin], model=ScriptedModel(...))``.

    Its home is ``tmp_path / "chorus"``; memory and tracing are off unless asked, only the
    plugins asked for load, real model calls are refused. After the test, the models it
    registered are unregistered (see :class:`chorus.testing.ChorusFactory`).
    """
    from chorus.testing._factory import ChorusFactory

    with ChorusFactory(tmp_path / "chorus") as factory:
        yield factory
