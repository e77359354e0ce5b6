"""The openai-batch backend against the scripted Batch API server: splitting, expiry, failures, resume."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from batch_api_server import BatchPlan, FakeOpenAIServer, Reply, judgment_reply, scripted

from emojudge_models.judge import (
    BatchesStillRunning,
    BatchJudge,
    InMemoryBatchLedger,
    JudgeConfig,
    JudgeInput,
    JudgeRequest,
    build_requests,
    chunk_requests,
)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-batch-test-key-0123456789")


def make_requests(n: int, markers: list[str] | None = None) -> list[JudgeRequest]:
    inputs = [
        JudgeInput(
            eval_set="dev",
            utterance_id=f"u{i}",
            transcript=(markers[i] if markers else f"sentence {i}"),
            speaker_id=None,
            gender=None,
            prosody_description="Quiet and slow.",
            fused_label="sad",
            fused_probability=0.6,
        )
        for i in range(n)
    ]
    return build_requests(inputs, JudgeConfig())


def make_judge(server: FakeOpenAIServer, ledger: InMemoryBatchLedger, **options: object) -> BatchJudge:
    settings: dict[str, object] = {"poll_interval_s": 0.01, "max_poll_interval_s": 0.05, "max_wait_s": 10.0}
    settings.update(options)
    return BatchJudge(ledger, server.base_url, max_retries=0, **settings)  # type: ignore[arg-type]


def ids(requests: list[JudgeRequest]) -> list[str]:
    return [r.custom_id for r in requests]


def test_requests_are_split_at_the_per_file_limits() -> None:
    requests = make_requests(5)
    line_bytes = len(requests[0].batch_line())
    chunks, oversized = chunk_requests(requests, max_requests=2, max_bytes=10**9)
    assert [len(c) for c in chunks] == [2, 2, 1] and oversized == []
    chunks, _ = chunk_requests(requests, max_requests=50_000, max_bytes=3 * line_bytes + 2)
    assert [len(c) for c in chunks] == [3, 2]
    assert [r for chunk in chunks for r, _ in chunk] == requests
    chunks, oversized = chunk_requests(requests, max_requests=10, max_bytes=line_bytes - 50)
    assert chunks == [] and oversized == requests


def test_a_batch_run_uploads_creates_polls_and_collects() -> None:
    requests = make_requests(5)
    ledger = InMemoryBatchLedger()
    with FakeOpenAIServer(batch_plans=[BatchPlan(polls_in_progress=2)]) as server:
        results = make_judge(server, ledger, max_requests_per_file=2).run(requests)

        assert server.created_custom_ids() == [ids(requests[:2]), ids(requests[2:4]), ids(requests[4:])]
        assert [server.files[file_id][1] for file_id in server.uploads] == ["batch"] * 3
        for batch_id, chunk in zip(server.batches, [requests[:2], requests[2:4], requests[4:]], strict=True):
            assert server.batch_input_lines(batch_id) == [json.loads(r.batch_line()) for r in chunk]
    assert {(c["endpoint"], c["completion_window"]) for c in server.create_requests} == {
        ("/v1/chat/completions", "24h")
    }
    assert [r.custom_id for r in results] == ids(requests)
    assert all(r.judgment is not None and r.judgment.label == "sad" and r.error is None for r in results)
    assert {r.batch_id for r in results} == set(server.batches)
    assert ledger.open_batches() == []
    assert {record.status for record in ledger.all_batches()} == {"completed"}


@pytest.mark.reliability
def test_an_expired_batch_resubmits_only_what_was_not_answered() -> None:
    requests = make_requests(6)
    ledger = InMemoryBatchLedger()
    plans = [BatchPlan(outcome="expired", answered=3, in_error_file=2), BatchPlan()]
    with FakeOpenAIServer(batch_plans=plans) as server:
        results = make_judge(server, ledger).run(requests)
    assert server.created_custom_ids() == [ids(requests), ids(requests[3:])]
    assert all(r.error is None and r.judgment.label == "sad" for r in results)
    first, second = server.batches
    assert [r.batch_id for r in results] == [first] * 3 + [second] * 3
    assert sorted((r.status, r.attempt) for r in ledger.all_batches()) == [("completed", 2), ("expired", 1)]


def test_each_result_is_reported_while_its_batch_is_still_open_in_the_ledger() -> None:
    """on_result sees the expired batch's answers before the resubmitted batch is done, and before either batch is
    marked collected: a run killed after storing them resumes nothing it already has."""
    requests = make_requests(6)
    ledger = InMemoryBatchLedger()
    seen: list[tuple[str, str | None, bool]] = []

    def on_result(result) -> None:
        still_open = result.batch_id in {record.batch_id for record in ledger.open_batches()}
        seen.append((result.custom_id, result.batch_id, still_open))

    plans = [BatchPlan(outcome="expired", answered=3, in_error_file=2), BatchPlan(polls_in_progress=2)]
    with FakeOpenAIServer(batch_plans=plans) as server:
        results = make_judge(server, ledger).run(requests, on_result=on_result)
    first, second = server.batches
    assert seen == [(r.custom_id, r.batch_id, True) for r in results]
    assert [batch_id for _, batch_id, _ in seen] == [first] * 3 + [second] * 3
    assert ledger.open_batches() == []


@pytest.mark.reliability
def test_a_failing_batch_is_retried_a_bounded_number_of_times() -> None:
    requests = make_requests(3)
    ledger = InMemoryBatchLedger()
    with FakeOpenAIServer(batch_plans=[BatchPlan(outcome="failed"), BatchPlan(outcome="failed")]) as server:
        results = make_judge(server, ledger, max_attempts=2).run(requests)
    assert server.created_custom_ids() == [ids(requests), ids(requests)]
    for result in results:
        assert "token_limit_exceeded" in result.error and "gave up after 2 submissions" in result.error
        assert result.decide(0.8) == ("sad", False, result.error)
        assert not result.answered
    assert ledger.open_batches() == []


def test_a_failed_batch_then_a_good_one_yields_answers() -> None:
    requests = make_requests(2)
    with FakeOpenAIServer(batch_plans=[BatchPlan(outcome="failed")]) as server:
        results = make_judge(server, InMemoryBatchLedger()).run(requests)
    assert len(server.created) == 2
    assert all(r.error is None for r in results)


@pytest.mark.reliability
def test_only_retryable_request_errors_are_resubmitted() -> None:
    markers = ["m-500", "m-400", "m-malformed", "m-out-of-set", "m-change"]
    responder = scripted(
        {
            "m-500": [Reply(status=500), judgment_reply("sad", 0.9)],
            "m-400": [Reply(status=400, error_message="bad request body")],
            "m-malformed": [Reply(content="label: angry")],
            "m-out-of-set": [judgment_reply("boredom", 0.95)],
            "m-change": [judgment_reply("angry", 0.9)],
        }
    )
    requests = make_requests(5, markers)
    with FakeOpenAIServer(responder) as server:
        results = make_judge(server, InMemoryBatchLedger()).run(requests)
    assert server.created_custom_ids() == [ids(requests), ids(requests[:1])]
    by_marker = dict(zip(markers, results, strict=True))
    assert by_marker["m-500"].error is None and by_marker["m-500"].judgment.label == "sad"
    assert by_marker["m-400"].error == "HTTP 400: 400: bad request body"
    assert json.loads(by_marker["m-400"].response_json)["error"]["message"] == "bad request body"
    assert "not valid JSON" in by_marker["m-malformed"].error
    assert "label 'boredom' is not one of" in by_marker["m-out-of-set"].error
    assert [r.decide(0.8).final_label for r in results] == ["sad", "sad", "sad", "sad", "angry"]
    assert by_marker["m-change"].decide(0.8).accepted


@pytest.mark.reliability
def test_a_run_killed_while_polling_is_resumed_without_a_second_upload() -> None:
    requests = make_requests(4)
    ledger = InMemoryBatchLedger()
    with FakeOpenAIServer(batch_plans=[BatchPlan(polls_in_progress=3)]) as server:
        with pytest.raises(BatchesStillRunning) as stopped:
            make_judge(server, ledger, max_wait_s=0).run(requests)
        [open_batch] = ledger.open_batches()
        assert stopped.value.batch_ids == (open_batch.batch_id,)
        assert open_batch.custom_ids == tuple(ids(requests)) and open_batch.attempt == 1

        results = make_judge(server, ledger).run(requests)
        assert len(server.uploads) == 1 and len(server.created) == 1
    assert all(r.error is None and r.batch_id == open_batch.batch_id for r in results)
    assert ledger.open_batches() == []


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs."""


def dies_on_first_sleep() -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        raise Killed

    return sleep


@pytest.mark.reliability
def test_a_run_killed_after_resubmitting_resumes_both_batches_and_pays_once() -> None:
    requests = make_requests(4)
    ledger = InMemoryBatchLedger()
    plans = [
        BatchPlan(outcome="expired", polls_in_progress=0, answered=2, in_error_file=2),
        BatchPlan(polls_in_progress=2),
    ]
    with FakeOpenAIServer(batch_plans=plans) as server:
        with pytest.raises(Killed):
            make_judge(server, ledger, sleep=dies_on_first_sleep()).run(requests)
        assert sorted(r.attempt for r in ledger.open_batches()) == [1, 2]

        results = make_judge(server, ledger).run(requests)
        assert server.created_custom_ids() == [ids(requests), ids(requests[2:])]
    first, second = server.batches
    assert [r.batch_id for r in results] == [first, first, second, second]
    assert all(r.error is None for r in results)
    assert ledger.open_batches() == []


def test_resume_ignores_open_batches_for_other_requests() -> None:
    ledger = InMemoryBatchLedger()
    ledger.record_submitted("batch-of-another-run", "file-x", ["other:u1:0000"], 1)
    requests = make_requests(1)
    with FakeOpenAIServer() as server:
        results = make_judge(server, ledger).run(requests)
        assert len(server.created) == 1
    assert results[0].error is None
    assert [r.batch_id for r in ledger.open_batches()] == ["batch-of-another-run"]


@pytest.mark.reliability
def test_cancelled_batches_are_resubmitted_on_the_next_run() -> None:
    requests = make_requests(2)
    ledger = InMemoryBatchLedger()
    with FakeOpenAIServer(batch_plans=[BatchPlan(polls_in_progress=5)]) as server:
        with pytest.raises(BatchesStillRunning):
            make_judge(server, ledger, max_wait_s=0).run(requests)
        cancelled = make_judge(server, ledger).cancel_open_batches()
        assert cancelled == server.cancelled == [ledger.all_batches()[0].batch_id]
        assert ledger.all_batches()[0].status == "cancelling"

        results = make_judge(server, ledger).run(requests)
        assert server.created_custom_ids() == [ids(requests), ids(requests)]
    assert all(r.error is None for r in results)
    assert sorted(r.status for r in ledger.all_batches()) == ["cancelled", "completed"]


@pytest.mark.reliability
def test_the_wait_is_bounded_and_backs_off() -> None:
    waits: list[float] = []
    clock = iter(range(1000))
    requests = make_requests(1)
    with FakeOpenAIServer(batch_plans=[BatchPlan(polls_in_progress=100)]) as server:
        judge = BatchJudge(
            InMemoryBatchLedger(),
            server.base_url,
            poll_interval_s=1.0,
            poll_backoff=2.0,
            max_poll_interval_s=4.0,
            max_wait_s=6.0,
            sleep=waits.append,
            clock=lambda: float(next(clock)),
        )
        with pytest.raises(BatchesStillRunning):
            judge.run(requests)
    assert waits == [1.0, 2.0, 3.0, 2.0, 1.0]
