"""A stand-in for a llama.cpp ``llama-server`` that loads, answers ``/health``, then dies with SIGSEGV on its first
chat request: what the native llama.cpp build did on Intel Xeons with AMX under a VM (``ldtilecfg`` faulting in
``ggml_backend_amx_mul_mat``). Run as the ``EMOJUDGE_LLAMA_SERVER`` binary; it stops itself after 120 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        print("ggml_backend_amx_mul_mat: general protection fault (simulated)", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args, _ = parser.parse_known_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    threading.Timer(120, lambda: os._exit(0)).start()
    print(f"fake llama-server listening on {args.host}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    sys.exit(main())
