"""The servers of a cluster on loopback, for the demo and the tests: PostgreSQL, Redis and Celery workers.

Each is a real server binary started as a child of this process in its own process group, bound to 127.0.0.1 at a
free port, with a parent-death signal so it stops itself if this process dies, and stopped by its pid (only what was
started here). Linux sends that signal when the *thread* that started the child ends, so every server is started by
one long-lived thread of this process (:data:`_SPAWNER`): a server restarted from a short-lived thread (a test's
fault injector) outlives it. PostgreSQL refuses to run as root: as root, its folder is handed to the ``postgres``
user and the server runs as that user.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emojudge-server-spawner")
"""The one thread that starts every server (it lives as long as this process)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent(signum: int) -> None:
    """In the child (preexec): receive ``signum`` when the process that started it dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


def postgres_bin() -> Path | None:
    """The folder of the installed PostgreSQL server's binaries (the newest ``/usr/lib/postgresql/*/bin``, Debian's
    layout, else the folder of ``initdb`` on PATH when ``pg_ctl`` and ``postgres`` are beside it), or None."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found and (Path(found).parent / "postgres").exists():
        return Path(found).parent
    return None


@dataclass
class Server:
    """A started server process (its own process group), stopped by :meth:`stop`."""

    name: str
    process: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker and any child it runs)."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def start(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Server:
    def spawn() -> subprocess.Popen:
        with open(log, "ab") as handle:  # the child keeps its own descriptor
            return subprocess.Popen(
                list(argv),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                user=user,
                start_new_session=True,
                preexec_fn=lambda: _die_with_parent(stop_signal),
            )

    return Server(name, _SPAWNER.submit(spawn).result(), log, stop_signal)


def _wait(server: Server, ready, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}): {server.tail()}")
        if ready():
            return
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} not {what} after {READY_TIMEOUT_S:.0f} s: {server.tail()}")


@dataclass
class Postgres:
    """A PostgreSQL cluster in ``root`` (initdb), its server on 127.0.0.1:``port``, trust auth for ``user``."""

    root: Path
    port: int = field(default_factory=free_port)
    user: str = "emojudge"
    server: Server | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _os_user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def start(self, databases: Sequence[str]) -> Postgres:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb): apt-get install postgresql")
        os_user = self._os_user()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700, exist_ok=True)
        if os_user:
            owner = pwd.getpwnam(os_user)
            for path in (self.root, self.data):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                [binaries / "initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True,
                capture_output=True,
                user=os_user,
            )
        self._serve()
        for database in databases:
            subprocess.run(
                [binaries / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, database],
                check=True,
                capture_output=True,
            )
        return self

    def _serve(self) -> None:
        """The server on the existing data folder, until it accepts connections."""
        os_user = self._os_user()
        options = ["-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.root), "-c", "max_connections=200"]
        options += ["-c", "fsync=off"]  # a throwaway demo cluster; a real one keeps fsync
        log = self.root / "server.log"
        log.touch()
        if os_user:
            shutil.chown(log, os_user)
        # postgres itself (not pg_ctl, which detaches it), so it dies with this process; SIGINT is a fast shutdown
        self.server = start(
            "postgres",
            [str(postgres_bin() / "postgres"), "-D", str(self.data), *options],
            log,
            user=os_user,
            stop_signal=signal.SIGINT,
        )
        _wait(self.server, self._ready, "accepting connections")

    def restart(self, down_s: float = 0.0) -> None:
        """A fast shutdown (every open connection is cut), ``down_s`` with no server, then the server again on the
        same port and data: what ``pg_ctl restart -m fast`` does to the clients of a real catalog. Any thread may
        call it (the server is started by the spawner thread)."""
        self.server.stop()
        time.sleep(down_s)
        self._serve()

    def _ready(self) -> bool:
        binaries = postgres_bin()
        probe = [binaries / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def conninfo(self, database: str) -> str:
        """A libpq connection string (the DuckLake catalog's form)."""
        return f"dbname={database} host=127.0.0.1 port={self.port} user={self.user}"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL with the psycopg2 driver dagster-postgres installs (Dagster's form)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"


def start_redis(root: Path) -> tuple[Server, str]:
    """redis-server on 127.0.0.1 at a free port, no persistence; returns it and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no redis-server: apt-get install redis-server")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(root)]
    server = start("redis", argv, root / "redis.log")

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    _wait(server, ready, "answering PING")
    return server, f"redis://127.0.0.1:{port}/0"


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Server:
    """A Celery worker named ``name`` running one step at a time in its own process (solo pool), so a step's pid
    is the worker's and killing the worker's process group kills its step."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "emojudge_pipeline.cluster.celery_app",
        "worker",
        "-n",
        f"{name}@%h",
        "-P",
        "solo",
        "-Q",
        "dagster",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    server = start(name, argv, log_dir / f"{name}.log", env=env)
    _wait(server, lambda: " ready." in server.tail(20_000), "ready")
    return server


def start_daemon(env: dict[str, str], log_dir: Path) -> Server:
    """A real ``dagster-daemon`` on the cluster's instance (its sensors, schedules and run queue), loading this
    project's code location; its runs' steps go wherever the executor setting sends them."""
    argv = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-m", "emojudge_pipeline.definitions"]
    log_dir.mkdir(parents=True, exist_ok=True)
    return start("dagster-daemon", argv, log_dir / "dagster-daemon.log", env=env)
