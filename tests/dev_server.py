"""Helpers for tests that start `dagster dev` / `dg dev` on 127.0.0.1 and stop it by its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def interruptible() -> None:
    """In the server's process: SIGINT back to its default, so Python raises KeyboardInterrupt and dagster dev (which
    maps SIGTERM to SIGINT's handler) shuts down its webserver, daemon and code servers even when a test runs with
    SIGINT ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_group(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not ended within 60 s (nothing if it ended)."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
