"""Files an agent's reply carries: a ``File:`` heading followed by a fenced code block.

::

    ### File: `wordcount.py`
    ```python
    print("hello")
    ```

The page attaches each such file to the reply as a download, ``chorus ask --save-files DIR``
writes them, and the builder plugin's coder writes its code this way (a real model is told the
convention in its system message). A name is a relative path of plain parts (letters, digits,
``._-``); anything else (``..``, an absolute path, a drive) is not a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_FILE = re.compile(
    r"^#{1,6}[ \t]*File:[ \t]*`?(?P<name>[^`\n]+?)`?[ \t]*\n+"  # the heading: ### File: `name.py`
    r"(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)\n(?P=fence)[ \t]*$",  # closed by its own fence, on a line
    re.MULTILINE | re.DOTALL,
)
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class ProducedFile:
    name: str
    """A relative path (``src/app.py``)."""
    content: str


def safe_name(name: str) -> str | None:
    """``name`` as a relative POSIX path of plain parts, else None."""
    parts = PurePosixPath(name.strip().replace("\\", "/")).parts
    if not parts or len(parts) > 6 or not all(_PART.match(p) and p not in (".", "..") for p in parts):
        return None
    return "/".join(parts)


def files_in(text: str) -> list[ProducedFile]:
    """The files ``text`` carries, in order; a later file of the same name replaces an earlier one."""
    found: dict[str, ProducedFile] = {}
    for match in _FILE.finditer(text):
        name = safe_name(match["name"])
        if name is not None:
            found.pop(name, None)
            found[name] = ProducedFile(name, match["body"] + "\n")
    return list(found.values())


def save_files(files: list[ProducedFile], directory: Path) -> tuple[list[Path], list[str]]:
    """Write ``files`` under ``directory`` (created if need be): the paths written, and why each
    other file was not (a folder in the way, no permission...); one failure never stops the rest."""
    root = directory.resolve()
    written: list[Path] = []
    problems: list[str] = []
    for produced in files:
        path = (root / produced.name).resolve()
        if root not in path.parents:  # (safe_name already refused it; never write outside)
            problems.append(f"{produced.name}: outside {root}")
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(produced.content, encoding="utf-8")
        except OSError as exc:
            problems.append(f"{produced.name}: {exc.strerror or exc}")
            continue
        written.append(path)
    return written, problems
