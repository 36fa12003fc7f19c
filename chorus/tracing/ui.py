"""Where the MLflow UI is: what a running ``chorus mlflow`` records in the data directory."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from chorus.processes import pid_alive

UI_RECORD = "mlflow-ui.json"  # in the data directory: where a running `chorus mlflow` serves the UI
_EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


@dataclass(frozen=True)
class ServedUI:
    """An MLflow UI that ``chorus mlflow`` is serving: what :func:`record_ui` wrote."""

    host: str
    port: int
    pid: int
    machine: str

    def url(self, request_host: str | None = None) -> str:
        host = self.host
        if host in _EVERY_INTERFACE:  # reachable under whatever name the browser reached Chorus by
            host = request_host or "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        return f"http://{host}:{self.port}"


def record_ui(home: Path, host: str, port: int) -> Path:
    """Note in the data directory that this process serves the MLflow UI at ``host:port``; the
    chat server's trace links read it (:meth:`Tracer.ui_url`). :func:`forget_ui` removes it."""
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    path = home / UI_RECORD
    partial = path.with_name(f".{UI_RECORD}.{os.getpid()}")
    partial.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(),
                                   "machine": socket.gethostname()}), encoding="utf-8")
    partial.replace(path)  # whole or not at all, for a reader at the same moment
    return path


def forget_ui(home: Path) -> None:
    """Remove this process's record of the UI it served (a newer ``chorus mlflow``'s stays)."""
    path = home.expanduser() / UI_RECORD
    served = recorded_ui(home, check_alive=False)
    if served is not None and served.pid == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def recorded_ui(home: Path, *, check_alive: bool = True) -> ServedUI | None:
    """The MLflow UI a ``chorus mlflow`` records as serving, None when there is none or its process
    has ended (a record left by a killed one is ignored; only checkable on the same machine)."""
    try:
        data = json.loads((home.expanduser() / UI_RECORD).read_text(encoding="utf-8"))
        served = ServedUI(host=str(data["host"]), port=int(data["port"]), pid=int(data["pid"]),
                          machine=str(data.get("machine", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive and served.machine == socket.gethostname() and not pid_alive(served.pid):
        return None
    return served


