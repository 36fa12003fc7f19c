"""Several Chorus workers behind Debian's nginx, configured by ``deploy/nginx-chorus.conf`` itself.

Used by ``tests/test_workers.py`` and ``bench/load.py``. The deployment file is used as
shipped; only its ``listen`` port and its ``server`` lines are replaced by this run's ports.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_CONF = ROOT / "deploy" / "nginx-chorus.conf"
POSTGRES_ADMIN = os.environ.get("CHORUS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_config(root: Path, port: int, worker_ports: list[int]) -> Path:
    """An nginx.conf that includes the deployment file, pointed at this run's ports."""
    site = DEPLOY_CONF.read_text()
    options = re.search(r"server 127\.0\.0\.1:\d+( [^;]*);", site)
    servers = "\n".join(f"    server 127.0.0.1:{p}{options.group(1) if options else ''};" for p in worker_ports)
    site = re.sub(r"(?m)^    server 127\.0\.0\.1:\d+[^;]*;\n", "", site)
    site = site.replace("keepalive 32;", servers.strip() + "\n    keepalive 32;")
    site = re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", site)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o777)
    (root / "chorus.conf").write_text(site)
    main = root / "nginx.conf"
    main.write_text(f"""
{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
worker_rlimit_nofile 8192;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/chorus.conf;
}}
""")
    return main


class NginxProxy:
    """nginx in the foreground, in its own directory, in front of ``worker_ports``."""

    def __init__(self, root: Path, worker_ports: list[int]) -> None:
        self.root = root
        self.worker_ports = worker_ports
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> NginxProxy:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = render_config(self.root, self.port, self.worker_ports)
        self.proc = subprocess.Popen([binary, "-p", str(self.root), "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=(self.root / "stderr.log").open("wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                logs = [self.root / "stderr.log", self.root / "error.log"]
                raise RuntimeError("nginx exited: " + "".join(p.read_text() for p in logs if p.exists()))
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError("nginx did not start listening")

    def terminate(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Terminate ``proc`` if it still runs; kill it if it does not stop within ``timeout``."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def _admin(statement: str) -> None:
    import sqlalchemy as sa

    from chorus.store import make_engine

    async def run() -> None:
        engine = make_engine(POSTGRES_ADMIN).execution_options(isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever the caller runs
        pool.submit(asyncio.run, asyncio.wait_for(run(), 15)).result()


def create_database() -> str:
    """A new, empty PostgreSQL database (the caller drops it with :func:`drop_database`)."""
    name = f"chorus_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
