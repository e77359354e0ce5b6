"""The persistent Dagster instance of the CLI and the UI, its dagster.yaml, and recovery from dead runs.

A run killed outright (SIGKILL, the OOM killer, an abort in native code) stays STARTED (and would keep any
concurrency slots it held). Its warehouse lock dies with its process, so later runs are not blocked; but the UI
would show it running forever. Each ``emojudge materialize`` therefore tags its run with its process (host, pid,
process start time) and a heartbeat, and before it runs marks failed every run whose process is gone and frees
that run's slots; the daemon does the same every minute (``dead_run_sensor``). Runs started elsewhere (the UI,
``dagster asset materialize``) are judged by the processes that ran them, when the instance's storage is this
machine's SQLite files.

A signal always ends a waiting ``emojudge materialize`` within seconds: Dagster only records SIGINT/SIGTERM
while it orchestrates, so a watchdog ends the process when the run has not stopped :data:`INTERRUPT_GRACE_S`
after the signal.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import dagster as dg
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

from emojudge_models.processes import pid_alive
from emojudge_models.settings import Settings
from emojudge_pipeline.cluster.executor import storage_yaml

log = logging.getLogger("emojudge")

HEADER = "# Written by emojudge"
DAGSTER_YAML = f"""\
{HEADER}. No concurrency pool: warehouse write sessions serialise themselves (docs/warehouse.md).
# emojudge rewrites this file when its settings change; delete this first line to keep your own edits.
# the daemon (dagster dev) fails runs stuck in STARTING or CANCELING and frees slots of finished runs; runs whose
# process is gone are failed by `emojudge materialize` and the dead_run_sensor (emojudge_pipeline/instance.py)
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
# queued runs (the inbox sensor's, the rescoring's) start within a second, not on the queue's default 5-s check
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
# each sensor ticks on its own thread: the inbox sensor waits inside its tick for a file about to settle
sensors:
  use_threads: true
  num_workers: 4
telemetry:
  enabled: false
"""

_PROCESS_TAG = ".dagster/emojudge/"
"""Prefix of the tags naming a run's process: Dagster's hidden-tag prefix, so they are stored and read like any tag
but not shown in the UI (they are bookkeeping for dead-run detection, not something a user filters runs by)."""
TAG_HOST = f"{_PROCESS_TAG}host"
TAG_PID = f"{_PROCESS_TAG}pid"
TAG_PROCESS_START = f"{_PROCESS_TAG}process_start"
TAG_HEARTBEAT = f"{_PROCESS_TAG}heartbeat"
HEARTBEAT_S = 30.0
"""How often a running ``emojudge materialize`` refreshes its run's heartbeat tag."""
HEARTBEAT_STALE_S = 600.0
"""A run on another host whose heartbeat is older than this is dead."""
INTERRUPT_GRACE_S = 5.0
"""After SIGINT/SIGTERM, how long Dagster may take to stop the run before the process ends it."""

_LIVE_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def write_dagster_yaml(home: Path, storage: str = "") -> Path:
    """Write ``home/dagster.yaml`` when missing or when it is ours (first line :data:`HEADER`) but outdated;
    ``storage``: a ``storage:`` block (the cluster's PostgreSQL, ``cluster/executor.py``)."""
    config = home / "dagster.yaml"
    wanted = DAGSTER_YAML + storage
    if config.exists():
        current = config.read_text()
        if not current.startswith(HEADER) or current == wanted:
            return config
        log.info("updating %s to emojudge's current settings", config)
    config.write_text(wanted)
    return config


def instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The persistent Dagster instance shared with ``dagster dev`` (DAGSTER_HOME, default $EMOJUDGE_HOME/dagster)."""
    settings = settings or Settings.from_env()
    home = settings.dagster_dir
    home.mkdir(parents=True, exist_ok=True)
    write_dagster_yaml(home, storage_yaml(settings))
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat``), which tells a process from
    a later one given the same pid; None where there is no /proc, no such process, or only its zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` on this host is running (a zombie is not) and, given ``start``, is the same process."""
    if not pid_alive(pid):
        return False
    current = process_start(pid)
    if Path("/proc/self/stat").exists() and current is None:
        return False
    return start is None or current is None or current == start


def process_tags() -> dict[str, str]:
    """Run tags naming this process, so a later process can tell whether the run's process is gone."""
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()), TAG_HEARTBEAT: f"{time.time():.0f}"}
    start = process_start(os.getpid())
    if start is not None:
        tags[TAG_PROCESS_START] = start
    return tags


def _storage_is_local(inst: dg.DagsterInstance) -> bool:
    return isinstance(inst.run_storage, SqliteRunStorage)


def _worker_pids(inst: dg.DagsterInstance, run_id: str) -> set[int]:
    """The processes that ran ``run_id``: the emitters of its run-start and step-start events (not the UI or daemon
    that launched it); steps of a multiprocess run have their own."""
    kinds = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START}
    records = inst.get_records_for_run(run_id, of_type=kinds).records
    return {r.event_log_entry.dagster_event.pid for r in records if r.event_log_entry.dagster_event} - {None}


def death_reason(inst: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why the unfinished ``run`` is dead, or None when it is (or may be) alive.

    A run this CLI tagged is dead when its process is gone (same host) or its heartbeat is stale (another host). Any
    other STARTED run counts as dead only when the storage is this machine's (SQLite) and every process that ran
    it is gone; a run of unknown state is left alone.
    """
    tags = run.tags
    ours = TAG_PID in tags
    if ours and tags.get(TAG_HOST) != socket.gethostname():
        age = time.time() - float(tags.get(TAG_HEARTBEAT, "0"))
        return f"no heartbeat from {tags.get(TAG_HOST)} for {age:.0f} s" if age > HEARTBEAT_STALE_S else None
    if not ours and (run.status not in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
                     or not _storage_is_local(inst)):  # fmt: skip
        return None
    pids = _worker_pids(inst, run.run_id)
    if ours:
        pid = int(tags[TAG_PID])
        if process_alive(pid, tags.get(TAG_PROCESS_START)):
            return None
        pids.discard(pid)
        return None if any(process_alive(other) for other in pids) else f"its process {pid} is gone"
    if not pids or any(process_alive(pid) for pid in pids):
        return None
    return f"the processes that ran it ({', '.join(map(str, sorted(pids)))}) are gone"


def recover_dead_runs(inst: dg.DagsterInstance) -> list[str]:
    """Mark failed every unfinished run whose process is gone, free the pool slots of those runs and of finished
    runs still holding some; returns the ids of the runs marked failed."""
    failed = []
    for record in inst.get_run_records(RunsFilter(statuses=_LIVE_STATUSES)):
        run = record.dagster_run
        reason = death_reason(inst, run)
        if reason is None:
            continue
        inst.report_run_failed(run, f"emojudge: {reason}; marked failed so that its pool slots are freed")
        inst.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log.warning("run %s is dead: %s; marked it failed and freed its pool slots", run.run_id, reason)
        failed.append(run.run_id)
    if inst.event_log_storage.supports_global_concurrency_limits:
        for run_id in inst.event_log_storage.get_concurrency_run_ids():
            run = inst.get_run_by_id(run_id)
            if run is None or run.is_finished:
                inst.event_log_storage.free_concurrency_slots_for_run(run_id)
                log.info("freed the pool slots of finished run %s", run_id)
    return failed


_received: list[int] = []
"""Signals received inside :func:`interruptible` (Dagster turns the exception they raise into a failed run)."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def interrupted_by() -> int | None:
    """The signal that interrupted the last :func:`interruptible` block, or None."""
    return _received[-1] if _received else None


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt and SIGTERM SystemExit(143) in the main thread, whatever was installed;
    :func:`interrupted_by` tells afterwards which one came (a run catches the exception and only fails)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class RunWatchdog:
    """While a run executes in this process: refresh its heartbeat tag, and end the process when a SIGINT/SIGTERM
    has not stopped the run within ``grace_s`` (Dagster defers signals while it orchestrates).

    Signals are seen through :func:`signal.set_wakeup_fd`, which reports them whatever Python handler Dagster
    installs; the run is then marked failed and its slots freed before the process exits.
    """

    def __init__(self, inst: dg.DagsterInstance, run_id: str, grace_s: float = INTERRUPT_GRACE_S) -> None:
        self.inst = inst
        self.run_id = run_id
        self.grace_s = grace_s
        self._done = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd: int | None = None
        self.signal_received: int | None = None
        """SIGINT or SIGTERM, when one came while the run executed (Dagster then ends the run as failed)."""
        self._thread = threading.Thread(target=self._watch, name="emojudge-run-watchdog", daemon=True)

    def __enter__(self) -> RunWatchdog:
        if threading.current_thread() is threading.main_thread():
            self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        os.write(self._write_fd, b"\0")
        self._thread.join(timeout=5)
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _watch(self) -> None:
        while not self._done.is_set():
            ready, _, _ = select.select([self._read_fd], [], [], HEARTBEAT_S)
            if not ready:
                self._beat()
                continue
            received = os.read(self._read_fd, 64)
            signals = {signum for signum in received if signum in (signal.SIGINT, signal.SIGTERM)}
            if signals:
                self.signal_received = min(signals)
            if signals and not self._done.wait(self.grace_s):
                self._end(min(signals))

    def _beat(self) -> None:
        if self.inst.get_run_by_id(self.run_id) is not None:
            self.inst.add_run_tags(self.run_id, {TAG_HEARTBEAT: f"{time.time():.0f}"})

    def _end(self, signum: int) -> None:
        name = signal.Signals(signum).name
        run = self.inst.get_run_by_id(self.run_id)
        if run is not None and not run.is_finished:
            self.inst.report_run_failed(run, f"emojudge: interrupted by {name}")
        self.inst.event_log_storage.free_concurrency_slots_for_run(self.run_id)
        log.warning("run %s interrupted by %s: marked failed, pool slots freed", self.run_id, name)
        logging.shutdown()
        os._exit(128 + signum)
