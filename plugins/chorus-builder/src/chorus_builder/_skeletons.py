"""What the builder can write without a language model: a plan and a runnable skeleton for a few
common requests (a command-line tool, a small web API, a game loop), chosen by the request's words.

Every skeleton is standard-library Python, runs as written, and has a self-check the tests run
(``--help``/a sample for the CLI, ``--self-test`` for the API, ``--demo`` for the game).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_KINDS = (
    ("game", re.compile(r"\b(game|games|snake|tic[- ]?tac[- ]?toe|hangman|pong|tetris|guess(ing)?|puzzle|"
                        r"rock[- ]paper|dice|maze|adventure)\b", re.I)),
    ("api", re.compile(r"\b(api|apis|rest|restful|endpoints?|web ?service|http server|backend|microservice|"
                       r"json server|crud)\b", re.I)),
    ("cli", re.compile(r"\b(cli|command[- ]line|terminal|console|script|command)\b|\bcommand tool\b", re.I)),
)
_STOP = set("""a an the and or of to for in on with that which who what how me my i you your it its this these
those be is are was were will would can could should please make build create write develop give need want
small simple little tiny quick basic new python tool app application program cli command line terminal
console script web api rest restful service server endpoint endpoints http game loop some from into by as
at using use lets let about like just also""".split())
KIND_NAMES = {"cli": "a command-line tool", "api": "a small web API", "game": "a game loop"}


@dataclass
class Blueprint:
    """What the offline builder makes of a request."""

    request: str
    kind: str | None
    """``cli``, ``api``, ``game``, or None for a request the offline builder has no skeleton for."""
    subject: str
    """A few words the request is about (``count words``), used for names."""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "_".join(self.subject.split()) or {"cli": "tool", "api": "service", "game": "game"}.get(
            self.kind or "", "project")

    @property
    def what(self) -> str:
        return KIND_NAMES.get(self.kind or "", "this project")


def blueprint(request: str) -> Blueprint:
    """The kind of program ``request`` asks for, what it is about, and (for a known kind) its files."""
    kind = next((name for name, pattern in _KINDS if pattern.search(request)), None)
    words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", request)]
    content = [w for w in words if w not in _STOP and len(w) > 2]
    subject = " ".join(content[:2])
    plan = Blueprint(request=request, kind=kind, subject=subject)
    if kind == "cli":
        plan.files = {f"{plan.name}.py": _cli(plan), f"test_{plan.name}.py": _cli_test(plan)}
    elif kind == "api":
        resource = content[0] + ("" if content[0].endswith("s") else "s") if content else "items"
        plan.files = {f"{plan.name}.py": _api(plan, resource)}
    elif kind == "game":
        plan.files = {f"{plan.name}.py": _game(plan)}
    return plan


def plan_steps(plan: Blueprint) -> list[str]:
    """The plan: numbered steps a person (or the coder) can follow."""
    main = next(iter(plan.files), f"{plan.name}.py")
    if plan.kind == "cli":
        return ["Parse the command line with `argparse`: input files (or standard input), `--version`.",
                f"Put the work in one pure function, `process(text)`, that the command calls for each input "
                f"(about: {plan.subject or 'the request'}).",
                "Print one line per input; exit 0 on success, 2 on a usage error (argparse does it).",
                f"Test `process` and the command in `test_{plan.name}.py`.",
                f"Run it: `python {main} --help`, then `python {main} FILE`."]
    if plan.kind == "api":
        return ["Serve JSON over HTTP with the standard library (`http.server`), no framework to install.",
                "Routes: `GET /health`, `GET /<things>`, `POST /<things>` (JSON body), `GET` and `DELETE "
                "/<things>/<id>`; 404 and 400 as JSON errors.",
                "Keep the data in memory behind one lock (swap for a database later).",
                "Add `--self-test`: start on a free port, create and read one item, stop.",
                f"Run it: `python {main} --port 8000`."]
    if plan.kind == "game":
        return ["Separate the game's state and rules (`Game.update(command)`) from the loop that reads input "
                "and prints the state.",
                "The loop: show the prompt, read a command, update, print the result, until the game is over.",
                "Make it reproducible: `--seed` fixes the random choices.",
                "Add `--demo`: the loop plays by itself with a simple strategy (a smoke test).",
                f"Run it: `python {main}` (or `--demo`)."]
    return ["Pin down the inputs, the outputs and what done looks like for: " + plan.request.strip(),
            "Choose the pieces (modules, data, interfaces) and the libraries for each.",
            "Build the smallest version that runs end to end, then add the rest in small steps with tests.",
            "Write the README: how to install, run and test it."]


def architecture(plan: Blueprint) -> list[str]:
    """The executor's notes: how the files fit together and what to check."""
    if plan.kind is None:
        return ["No skeleton for this kind of request offline: the plan stands as a checklist.",
                "With a real model (`CHORUS_MODEL`) the coder writes the code for it."]
    notes = [f"Files: {', '.join(f'`{name}`' for name in plan.files)}; standard library only, Python 3.11+."]
    if plan.kind == "cli":
        notes += ["Entry point: `main(argv)` returns the exit code, so tests call it without a subprocess.",
                  "`process(text)` is pure: easy to test and to replace with the real work."]
    elif plan.kind == "api":
        notes += ["`make_server(port)` builds the server; `Handler` maps routes; the store is a dict and a lock.",
                  "Errors are JSON with a status code: a client always gets a body it can parse."]
    else:
        notes += ["`Game` holds the state and the rules; `play(game, commands)` is the loop; `main` wires input.",
                  "The loop takes its commands from any iterator, so `--demo` and tests drive it like a player."]
    notes.append("Checked: each plan step maps to a function; nothing needs a network or an install.")
    return notes


def _title(plan: Blueprint) -> str:
    return (plan.subject or plan.what).capitalize()


def _doc(plan: Blueprint) -> str:
    request = " ".join(plan.request.split()).replace("\\", "\\\\").replace('"""', "'''")
    return f"{_title(plan)}: {plan.what}, written by Chorus's builder.\n\nAsked for: {request}\n"


def _cli(plan: Blueprint) -> str:
    return f'''"""{_doc(plan)}
Run ``python {plan.name}.py --help``. Replace ``process`` with the real work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

VERSION = "0.1.0"


def process(text: str) -> dict[str, int]:
    """The work on one input. A placeholder that counts lines, words and characters: replace it."""
    return {{"lines": len(text.splitlines()), "words": len(text.split()), "characters": len(text)}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="{plan.name}", description={_title(plan)!r})
    parser.add_argument("paths", nargs="*", type=Path, help="input files (standard input when none)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {{VERSION}}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        inputs = [(str(p), p.read_text(encoding="utf-8")) for p in args.paths] or [("-", sys.stdin.read())]
    except OSError as exc:
        print(f"{plan.name}: {{exc}}", file=sys.stderr)
        return 1
    for name, text in inputs:
        result = process(text)
        print(name, " ".join(f"{{key}}={{value}}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''


def _cli_test(plan: Blueprint) -> str:
    return f'''"""Tests of {plan.name}.py: run ``python -m pytest test_{plan.name}.py`` (or this file)."""

from __future__ import annotations

from pathlib import Path

from {plan.name} import main, process


def test_process_counts() -> None:
    assert process("one two\\nthree") == {{"lines": 2, "words": 3, "characters": 13}}


def test_main_reads_a_file(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    sample = tmp_path / "sample.txt"
    sample.write_text("hello world\\n", encoding="utf-8")
    assert main([str(sample)]) == 0
    assert "words=2" in capsys.readouterr().out


if __name__ == "__main__":
    test_process_counts()
    print("ok")
'''


def _api(plan: Blueprint, resource: str) -> str:
    return f'''"""{_doc(plan)}
A JSON API on the standard library: ``python {plan.name}.py --port 8000``, then
``curl localhost:8000/{resource}``. ``--self-test`` starts it on a free port, uses it and stops.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RESOURCE = "{resource}"
_items: dict[int, dict[str, Any]] = {{}}
_lock = threading.Lock()
_next_id = [1]


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _item_id(self) -> int | None:
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) == 2 and parts[0] == RESOURCE and parts[1].isdigit():
            return int(parts[1])
        return None

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            return self._send(200, {{"status": "ok"}})
        if path == f"/{{RESOURCE}}":
            with _lock:
                return self._send(200, list(_items.values()))
        item_id = self._item_id()
        with _lock:
            item = _items.get(item_id) if item_id is not None else None
        if item is None:
            return self._send(404, {{"error": "not found"}})
        return self._send(200, item)

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0].rstrip("/") != f"/{{RESOURCE}}":
            return self._send(404, {{"error": "not found"}})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{{}}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            return self._send(400, {{"error": f"bad JSON: {{exc}}"}})
        with _lock:
            item = {{**body, "id": _next_id[0]}}
            _items[_next_id[0]] = item
            _next_id[0] += 1
        return self._send(201, item)

    def do_DELETE(self) -> None:  # noqa: N802
        item_id = self._item_id()
        with _lock:
            found = item_id is not None and _items.pop(item_id, None) is not None
        return self._send(204 if found else 404, {{}} if found else {{"error": "not found"}})

    def log_message(self, format: str, *args: Any) -> None:  # quiet; add logging as you need it
        pass


def make_server(port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), Handler)


def self_test() -> int:
    server = make_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{{server.server_address[1]}}"
    try:
        request = urllib.request.Request(f"{{base}}/{{RESOURCE}}", data=json.dumps({{"name": "first"}}).encode(),
                                         headers={{"Content-Type": "application/json"}}, method="POST")
        created = json.load(urllib.request.urlopen(request, timeout=5))
        listed = json.load(urllib.request.urlopen(f"{{base}}/{{RESOURCE}}", timeout=5))
        assert created["name"] == "first" and listed == [created], listed
        print(f"self-test passed: created and listed {{RESOURCE}} at {{base}}")
        return 0
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description={_title(plan)!r})
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--self-test", action="store_true", help="start, use and stop the API")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test()
    server = make_server(args.port)
    print(f"serving /{{RESOURCE}} on http://127.0.0.1:{{args.port}} (Ctrl+C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''


def _game(plan: Blueprint) -> str:
    return f'''"""{_doc(plan)}
A game loop: ``Game`` holds the state and the rules, ``play`` reads commands until the game is
over. The rules here are a placeholder (guess the number) to replace with your game's.
``python {plan.name}.py`` plays in the terminal; ``--demo`` plays by itself.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterable


class Game:
    def __init__(self, seed: int | None = None, low: int = 1, high: int = 100) -> None:
        self.low, self.high = low, high
        self.secret = random.Random(seed).randint(low, high)
        self.turns = 0
        self.over = False

    def prompt(self) -> str:
        return f"Guess a number from {{self.low}} to {{self.high}}: "

    def update(self, command: str) -> str:
        """One move: the command a player typed, and what the game says back."""
        if command.strip().lower() in ("q", "quit", "exit"):
            self.over = True
            return f"Bye! It was {{self.secret}}."
        try:
            guess = int(command)
        except ValueError:
            return "Type a whole number (or q to quit)."
        self.turns += 1
        if guess < self.secret:
            self.low = max(self.low, guess + 1)
            return "Higher."
        if guess > self.secret:
            self.high = min(self.high, guess - 1)
            return "Lower."
        self.over = True
        return f"Right: {{guess}}, in {{self.turns}} turns."


def play(game: Game, commands: Iterable[str], show: Callable[[str], None] = print) -> int:
    """The loop: for each command, update the game and show the result, until it is over."""
    for command in commands:
        show(game.update(command))
        if game.over:
            break
    return game.turns


def demo_moves(game: Game) -> Iterable[str]:
    """A player that halves the range each turn (always wins within 7 turns from 1 to 100)."""
    while not game.over:
        yield str((game.low + game.high) // 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description={_title(plan)!r})
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--demo", action="store_true", help="let the game play itself")
    args = parser.parse_args(argv)
    game = Game(seed=args.seed)
    if args.demo:
        turns = play(game, demo_moves(game))
        print(f"demo finished in {{turns}} turns")
        return 0

    def typed() -> Iterable[str]:
        while True:
            try:
                yield input(game.prompt())
            except EOFError:
                yield "q"

    play(game, typed())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''
