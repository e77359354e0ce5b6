"""A scripted stand-in for the OpenAI endpoints the judge uses, served on 127.0.0.1 for tests.

Implements POST /v1/files (multipart), GET /v1/files/{id}/content, POST /v1/batches, GET /v1/batches/{id},
POST /v1/batches/{id}/cancel and POST /v1/chat/completions. Answers come from a responder (chat request body,
nth call with the same messages) -> :class:`Reply`; batches follow :class:`BatchPlan`s, one per created batch
in order; ``upload_error`` makes every upload fail. Everything the client sent is recorded for assertions.
The server stops on context exit, or by itself after ``max_lifetime_s``.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One chat-completion answer: 200 with ``content`` (or with ``raw_body`` sent as is), or an HTTP error."""

    status: int = 200
    content: str | None = None
    raw_body: str | None = None
    """A 200 body sent verbatim instead of a completion (a gateway's HTML error page, a completion without choices)."""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = "scripted error"
    echo_key: bool = False
    """Put the caller's bearer token in the error message, as an API rejecting a key might."""
    delay_s: float = 0.0
    trickle_s: float = 0.0
    """Send the headers at once, then the body one byte every ``trickle_s`` seconds (a stalled proxy)."""


def judgment_reply(label: str, confidence: float, rationale: str = "scripted") -> Reply:
    return Reply(content=json.dumps({"label": label, "confidence": confidence, "rationale": rationale}))


Responder = Callable[[dict[str, Any], int], Reply]


def user_message(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def keep_prediction(body: dict[str, Any], call: int) -> Reply:
    """Default responder: agree with the predicted emotion at confidence 0.9."""
    predicted = re.search(r"Predicted emotion: (\w+)", user_message(body))
    return judgment_reply(predicted.group(1) if predicted else "neutral", 0.9)


def scripted(by_marker: dict[str, list[Reply]], default: Responder = keep_prediction) -> Responder:
    """Replies chosen by a marker found in the user message: the nth call gets the nth reply (the last repeats)."""

    def respond(body: dict[str, Any], call: int) -> Reply:
        text = user_message(body)
        for marker, replies in by_marker.items():
            if marker in text:
                return replies[min(call, len(replies)) - 1]
        return default(body, call)

    return respond


@dataclass
class BatchPlan:
    """How one created batch behaves: ``in_progress`` for some polls, then its ``outcome``.

    ``expired``: the first ``answered`` lines get outputs, the next ``in_error_file`` get ``batch_expired``
    error lines, the rest are missing from both files. ``failed``: no files, a batch-level error.
    """

    outcome: str = "completed"
    polls_in_progress: int = 1
    answered: int = 0
    in_error_file: int = 0


@dataclass
class _Batch:
    id: str
    input_file_id: str
    plan: BatchPlan
    created_at: int
    status: str = "validating"
    polls: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = None
    finished_at: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})


class FakeOpenAIServer:
    def __init__(
        self,
        responder: Responder = keep_prediction,
        batch_plans: list[BatchPlan] | None = None,
        upload_error: Reply | None = None,
        max_lifetime_s: float = 120.0,
    ) -> None:
        self.responder = responder
        self.upload_error = upload_error
        self.batch_plans = list(batch_plans or [])
        self.files: dict[str, tuple[bytes, str]] = {}
        self.batches: dict[str, _Batch] = {}
        self.uploads: list[str] = []
        self.created: list[tuple[str, list[str]]] = []
        self.create_requests: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.chat_bodies: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._calls: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(max_lifetime_s, self.close)
        self._timer.daemon = True
        self._closed = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._timer.cancel()
        self._http.shutdown()
        self._http.server_close()

    # --- what the client sent -------------------------------------------------------------------------------

    def created_custom_ids(self) -> list[list[str]]:
        return [ids for _, ids in self.created]

    def batch_input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        batch = self.batches[batch_id]
        return [json.loads(line) for line in self.files[batch.input_file_id][0].decode().splitlines() if line]

    # --- behaviour ------------------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}"

    def _answer(self, body: dict[str, Any]) -> Reply:
        key = json.dumps(body.get("messages"), sort_keys=True)
        with self._lock:
            self._calls[key] += 1
            call = self._calls[key]
        return self.responder(body, call)

    @staticmethod
    def _completion(body: dict[str, Any], content: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }

    @staticmethod
    def _error_body(reply: Reply, authorization: str) -> dict[str, Any]:
        message = reply.error_message
        if reply.echo_key:
            message += f" (key {authorization.removeprefix('Bearer ')})"
        return {"error": {"message": message, "type": "scripted", "code": str(reply.status)}}

    def _store_file(self, data: bytes, purpose: str) -> str:
        file_id = self._new_id("file")
        self.files[file_id] = (data, purpose)
        return file_id

    def _finish(self, batch: _Batch, authorization: str) -> None:
        plan = batch.plan
        now = int(time.time())
        if plan.outcome == "failed":
            batch.status = "failed"
            batch.errors = {
                "object": "list",
                "data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached", "line": None}],
            }
            batch.finished_at["failed_at"] = now
            return
        lines = self.batch_input_lines(batch.id)
        if plan.outcome == "expired":
            answered, expired = lines[: plan.answered], lines[plan.answered : plan.answered + plan.in_error_file]
        elif plan.outcome == "cancelled":
            answered, expired = [], lines
        else:
            answered, expired = lines, []
        outputs, errors = [], []
        for line in answered:
            reply = self._answer(line["body"])
            if reply.status == 200:
                response = {
                    "status_code": 200,
                    "request_id": "req",
                    "body": self._completion(line["body"], reply.content),
                }
                outputs.append(
                    {
                        "id": self._new_id("batch_req"),
                        "custom_id": line["custom_id"],
                        "response": response,
                        "error": None,
                    }
                )
            else:
                response = {
                    "status_code": reply.status,
                    "request_id": "req",
                    "body": self._error_body(reply, authorization),
                }
                errors.append(
                    {
                        "id": self._new_id("batch_req"),
                        "custom_id": line["custom_id"],
                        "response": response,
                        "error": None,
                    }
                )
        code = "batch_cancelled" if plan.outcome == "cancelled" else "batch_expired"
        for line in expired:
            error = {"code": code, "message": "This request could not be executed before the batch ended."}
            errors.append(
                {"id": self._new_id("batch_req"), "custom_id": line["custom_id"], "response": None, "error": error}
            )
        if outputs:
            batch.output_file_id = self._store_file(
                "".join(json.dumps(o) + "\n" for o in outputs).encode(), "batch_output"
            )
        if errors:
            batch.error_file_id = self._store_file(
                "".join(json.dumps(e) + "\n" for e in errors).encode(), "batch_output"
            )
        batch.status = plan.outcome
        batch.finished_at[f"{plan.outcome}_at"] = now
        batch.counts = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}

    def _batch_json(self, batch: _Batch) -> dict[str, Any]:
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": batch.errors,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "expires_at": batch.created_at + 86_400,
            "request_counts": batch.counts,
            "metadata": None,
            **batch.finished_at,
        }

    # --- HTTP -----------------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(
                self,
                status: int,
                payload: dict[str, Any] | bytes,
                headers: dict[str, str] | None = None,
                content_type: str = "application/octet-stream",
                trickle_s: float = 0.0,
            ) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type if isinstance(payload, bytes) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                try:
                    self.end_headers()
                    if trickle_s <= 0:
                        self.wfile.write(data)
                    for index in range(len(data) if trickle_s > 0 else 0):
                        self.wfile.write(data[index : index + 1])
                        self.wfile.flush()
                        if server._closed:
                            break
                        time.sleep(trickle_s)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting (a timeout test does so on purpose)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _authorization(self) -> str:
                value = self.headers.get("Authorization", "")
                with server._lock:
                    server.authorizations.append(value)
                return value

            def do_GET(self) -> None:
                auth = self._authorization()
                if match := re.fullmatch(r"/v1/files/([\w-]+)/content", self.path):
                    stored = server.files.get(match.group(1))
                    return self._send(200, stored[0]) if stored else self._send(404, {"error": {"message": "no file"}})
                if match := re.fullmatch(r"/v1/batches/([\w-]+)", self.path):
                    with server._lock:
                        batch = server.batches.get(match.group(1))
                        if batch is None:
                            return self._send(404, {"error": {"message": "no batch"}})
                        batch.polls += 1
                        if batch.status == "cancelling":
                            batch.plan = BatchPlan(outcome="cancelled")
                            server._finish(batch, auth)
                        elif batch.status in ("validating", "in_progress"):
                            if batch.polls <= batch.plan.polls_in_progress:
                                batch.status = "in_progress"
                            else:
                                server._finish(batch, auth)
                        payload = server._batch_json(batch)
                    return self._send(200, payload)
                return self._send(404, {"error": {"message": f"no route GET {self.path}"}})

            def do_POST(self) -> None:
                auth = self._authorization()
                body = self._body()
                if self.path == "/v1/files" and server.upload_error is not None:
                    reply = server.upload_error
                    return self._send(reply.status, server._error_body(reply, auth), reply.headers)
                if self.path == "/v1/files":
                    fields = _multipart_fields(self.headers.get("Content-Type", ""), body)
                    with server._lock:
                        file_id = server._store_file(fields["file"], fields["purpose"].decode())
                        server.uploads.append(file_id)
                    return self._send(
                        200,
                        {
                            "id": file_id,
                            "object": "file",
                            "bytes": len(fields["file"]),
                            "created_at": int(time.time()),
                            "filename": "input.jsonl",
                            "purpose": fields["purpose"].decode(),
                            "status": "processed",
                        },
                    )
                if self.path == "/v1/batches":
                    request = json.loads(body)
                    with server._lock:
                        server.create_requests.append(request)
                        batch = _Batch(
                            id=server._new_id("batch"),
                            input_file_id=request["input_file_id"],
                            plan=server.batch_plans.pop(0) if server.batch_plans else BatchPlan(),
                            created_at=int(time.time()),
                        )
                        server.batches[batch.id] = batch
                        server.created.append(
                            (batch.id, [line["custom_id"] for line in server.batch_input_lines(batch.id)])
                        )
                        payload = server._batch_json(batch)
                    return self._send(200, payload)
                if match := re.fullmatch(r"/v1/batches/([\w-]+)/cancel", self.path):
                    with server._lock:
                        batch = server.batches[match.group(1)]
                        batch.status = "cancelling"
                        server.cancelled.append(batch.id)
                        payload = server._batch_json(batch)
                    return self._send(200, payload)
                if self.path == "/v1/chat/completions":
                    request = json.loads(body)
                    with server._lock:
                        server.chat_bodies.append(request)
                        server.in_flight += 1
                        server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    reply = server._answer(request)
                    time.sleep(reply.delay_s)
                    with server._lock:
                        server.in_flight -= 1
                    if reply.status != 200:
                        return self._send(reply.status, server._error_body(reply, auth), reply.headers)
                    if reply.raw_body is not None:
                        return self._send(200, reply.raw_body.encode(), reply.headers, reply.content_type)
                    completion = server._completion(request, reply.content)
                    return self._send(200, completion, reply.headers, trickle_s=reply.trickle_s)
                return self._send(404, {"error": {"message": f"no route POST {self.path}"}})

        return Handler


def _multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """Field name -> bytes of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }
