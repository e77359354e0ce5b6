"""The API key is used on the wire and appears nowhere else: logs, stored JSON, errors, exceptions, reprs."""

from __future__ import annotations

import logging

import pytest
from batch_api_server import BatchPlan, FakeOpenAIServer, Reply, judgment_reply, scripted

from emojudge_models.judge import (
    BatchApiError,
    BatchesStillRunning,
    BatchJudge,
    ChatJudge,
    InMemoryBatchLedger,
    JudgeConfig,
    JudgeInput,
    JudgeResult,
    build_requests,
)

SENTINEL = "sk-emojudge-sentinel-7f3a9c2e41d84b6f"


def make_requests(markers: list[str]) -> list:
    inputs = [
        JudgeInput("dev", f"u{i}", marker, "3", "male", "Loud.", "angry", 0.7, "angry", "sad")
        for i, marker in enumerate(markers)
    ]
    return build_requests(inputs, JudgeConfig())


def stored_text(result: JudgeResult) -> str:
    judgment = result.judgment
    parts = [result.request.request_json, result.response_json, result.error, repr(result)]
    parts += [judgment.rationale] if judgment else []
    return "\n".join(part or "" for part in parts)


def test_the_key_never_leaks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    caplog.set_level(logging.DEBUG)
    responder = scripted(
        {
            "m-rejected": [Reply(status=401, echo_key=True, error_message="Incorrect API key provided")],
            "m-echo-500": [Reply(status=500, echo_key=True, headers={"retry-after-ms": "5"})],
            "m-good": [judgment_reply("sad", 0.9)],
        }
    )
    requests = make_requests(["m-rejected", "m-echo-500", "m-good"])
    ledger = InMemoryBatchLedger()
    exceptions: list[BaseException] = []
    with FakeOpenAIServer(responder, batch_plans=[BatchPlan(polls_in_progress=2)]) as server:
        chat = ChatJudge(server.base_url, max_retries=1)
        chat_results = chat.judge(requests)
        batch = BatchJudge(ledger, server.base_url, poll_interval_s=0.01, max_wait_s=0, max_attempts=1, max_retries=0)
        with pytest.raises(BatchesStillRunning) as still_running:
            batch.run(requests)
        exceptions.append(still_running.value)
        batch.max_wait_s = 10
        batch_results = batch.run(requests)
        sent_keys = set(server.authorizations)
    with FakeOpenAIServer(upload_error=Reply(status=401, echo_key=True)) as failing:
        with pytest.raises(BatchApiError) as upload_failed:
            BatchJudge(InMemoryBatchLedger(), failing.base_url, max_retries=0).run(requests)
        exceptions.append(upload_failed.value)

    assert sent_keys == {f"Bearer {SENTINEL}"}
    rejected = chat_results[0]
    assert rejected.error.startswith("HTTP 401") and "[redacted]" in rejected.error
    assert "[redacted]" in rejected.response_json
    assert "[redacted]" in batch_results[1].error and "[redacted]" in str(upload_failed.value)
    assert chat_results[2].judgment is not None and batch_results[2].judgment is not None

    haystacks = [caplog.text, *(record.getMessage() for record in caplog.records)]
    haystacks += [stored_text(result) for result in chat_results + batch_results]
    haystacks += [str(error) for error in exceptions] + [repr(error) for error in exceptions]
    haystacks += [repr(chat), repr(batch), repr(ledger.all_batches())]
    captured = capfd.readouterr()
    haystacks += [captured.out, captured.err]
    assert caplog.records, "expected DEBUG logs from the SDK and the judge"
    assert not [text for text in haystacks if SENTINEL in text]
