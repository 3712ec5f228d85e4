"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` package, a cluster
made with ``initdb`` in a fresh temporary directory, run as the unprivileged user ``nobody``
when the tests run as root (PostgreSQL refuses to run as root), on a free loopback port with
its socket in that directory, and removed again by :meth:`PostgresCluster.stop`.

Each test takes a database of its own with :meth:`PostgresCluster.new_database`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

_counter = itertools.count(1)


def _bin_dir() -> Path:
    """The newest installed server's binaries (``/usr/lib/postgresql/<ver>/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    if which is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return Path(which).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A running throwaway cluster; ``url(dbname)`` connects to one of its databases as the
    superuser ``postgres`` (trust authentication, loopback only)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="kimi-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody", "nogroup")
            self._as_user = ["runuser", "-u", "nobody", "--"]

    def start(self) -> PostgresCluster:
        """initdb, then start the server and wait until it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   " -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.dir / "server.log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Stop the server at once and remove the cluster."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"runs_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._as_user, str(self.bin / program), *args],
                              capture_output=True, text=True, timeout=120, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{done.stdout}\n"
                               f"{done.stderr}\n{self.log()}")
