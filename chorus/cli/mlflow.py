"""``chorus mlflow``: MLflow's own server on Chorus's tracking store, stopped with its whole process group."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from chorus.cli._common import _fail, _hide_password
from chorus.cli._root import app


@app.command("mlflow")
def mlflow_ui(
    port: Annotated[int, typer.Option("--port", help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (loopback by default: traces hold "
                                                      "conversations; put authentication in front before "
                                                      "exposing it).")] = "127.0.0.1",
    backend_store_uri: Annotated[str | None, typer.Option(
        "--backend-store-uri", help="Serve this store (e.g. postgresql://...) as the tracking server of "
                                    "several workers; default: Chorus's own (CHORUS_MLFLOW_TRACKING_URI or "
                                    "mlflow.db).")] = None,
    artifacts_destination: Annotated[str | None, typer.Option(
        "--artifacts-destination", help="Where the server keeps artifacts (default: CHORUS_HOME/mlartifacts).",
    )] = None,
    workers: Annotated[int, typer.Option("--workers", help="MLflow's web worker processes.")] = 1,
    mlflow_args: Annotated[list[str] | None, typer.Argument(
        help="More `mlflow server` options, after `--` (e.g. -- --allowed-hosts mlflow-host:5000).")] = None,
) -> None:
    """Serve the MLflow UI and tracking server (every turn's trace, feedback and cost), offline-safe.

    Runs `mlflow server` with the offline switches; Ctrl+C, SIGTERM or SIGHUP stops it with all its workers.
    """
    from chorus._env import apply_offline_defaults
    from chorus.settings import get_settings
    from chorus.tracing import forget_ui, record_ui, tracking_uri

    settings = get_settings()
    uri = backend_store_uri or tracking_uri(settings)
    if uri.startswith("http"):
        raise _fail(f"traces go to the MLflow server at {uri}: open its UI there (or serve a store here with "
                    "--backend-store-uri)")
    home = settings.home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    apply_offline_defaults()  # already done at import; explicit, since `mlflow server` hangs offline without it
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--artifacts-destination", artifacts_destination or str((home / "mlartifacts").resolve()),
               "--host", host, "--port", str(port), "--workers", str(workers), *(mlflow_args or [])]
    typer.echo(f"MLflow UI for {_hide_password(uri)} on http://{host}:{port} (the chat page's trace links "
               "lead here unless CHORUS_MLFLOW_UI_URL says otherwise; Ctrl+C stops it)")
    record_ui(home, host, port)  # read by the chat server at each trace link, until this stops
    try:
        code = _run_process_group(command)
    finally:
        forget_ui(home)
    if code:
        raise _fail(f"mlflow server exited with status {code}", code=1)


def _run_process_group(command: list[str], stop_timeout: float = 10.0) -> int:
    """Run ``command`` in a process group of its own until it exits or this process is told to stop;
    then stop the whole group (and any process that left it). The command's exit status, 0 when stopped.

    `mlflow server` starts uvicorn workers and a job runner with seven huey consumers; when its
    main process is stopped alone, the consumers survive. So every process is signalled: SIGTERM
    first, SIGKILL after ``stop_timeout`` seconds (or at once on a second Ctrl+C).
    """
    import signal
    import subprocess
    import time

    stops: list[int] = []
    handled = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, lambda signum, _frame: stops.append(signum)) for signum in handled}
    try:
        proc = subprocess.Popen(command, process_group=0)
        try:
            while proc.poll() is None and not stops:
                time.sleep(0.1)
        finally:
            tree = _descendants(proc.pid)  # before anything stops: orphans leave the tree
            _signal_group(proc.pid, tree, signal.SIGTERM)
            deadline = time.monotonic() + stop_timeout
            # (proc.poll() also reaps our child, so that it does not count as alive.)
            while ((proc.poll() is None or _alive(tree, proc.pid)) and time.monotonic() < deadline
                   and len(stops) < 2):
                time.sleep(0.05)
            if proc.poll() is None or _alive(tree, proc.pid):
                _signal_group(proc.pid, tree, signal.SIGKILL)
            proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if stops else proc.returncode


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every running process: pid -> (parent pid, process group, start time), from /proc (zombies left out)."""
    table: dict[int, tuple[int, int, str]] = {}
    if not Path("/proc/self/stat").exists():
        return table  # not Linux: the process group alone is signalled
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19])
    return table


def _descendants(pid: int) -> dict[int, str]:
    """``pid`` and every process under it: pid -> start time (a pid reused later is not the same process)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(child)
    found = {pid: table[pid][2]} if pid in table else {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][2]
                todo.append(child)
    return found


def _survivors(tree: dict[int, str], group: int) -> set[int]:
    """The processes of ``tree`` or of process group ``group`` that still run."""
    return {pid for pid, (_parent, pgid, started) in _processes().items()
            if pgid == group or tree.get(pid) == started}


def _alive(tree: dict[int, str], group: int) -> bool:
    return bool(_survivors(tree, group))


def _signal_group(group: int, tree: dict[int, str], signum: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
    for pid in _survivors(tree, group):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
