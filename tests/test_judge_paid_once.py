"""Each prompt is paid for at most once, whatever runs at once: the judge journal's claims and durable answers, and
two real processes judging the same set side by side against a local server that counts requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from batch_api_server import FakeOpenAIServer, Reply, keep_prediction, user_message
from judge_run import seed_set

from emojudge_models.judge.journal import JudgeJournal, journal_path
from emojudge_models.store import warehouse

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-paid-once-test-0123456789")


def _row(custom_id: str, answered: bool = True) -> dict:
    return {
        "custom_id": custom_id,
        "answered": answered,
        "attempts": 1,
        "requested_at": datetime(2026, 12, 5, tzinfo=UTC),
    }


def test_a_claimed_prompt_is_not_claimed_by_another_live_run(tmp_path: Path) -> None:
    first = JudgeJournal(tmp_path / "journal.sqlite", "run-a")
    second = JudgeJournal(tmp_path / "journal.sqlite", "run-b")
    assert first.claim(["p1", "p2"]).mine == ["p1", "p2"]
    taken = second.claim(["p1", "p2", "p3"])
    assert (taken.mine, taken.held, taken.answered) == (["p3"], {"p1": "run-a", "p2": "run-a"}, {})
    first.record("set", _row("p1"), final=True)
    first.release(["p1"])
    after = second.claim(["p1", "p2"])
    assert after.mine == [] and list(after.answered) == ["p1"] and after.held == {"p2": "run-a"}
    assert after.answered["p1"]["requested_at"] == datetime(2026, 12, 5, tzinfo=UTC)
    first.release()
    assert second.claim(["p2"]).mine == ["p2"]


def test_an_invalid_answer_below_the_bound_may_be_asked_again(tmp_path: Path) -> None:
    journal = JudgeJournal(tmp_path / "journal.sqlite", "run-a")
    journal.record("set", _row("p1", answered=False), final=False)
    assert JudgeJournal(tmp_path / "journal.sqlite", "run-b").claim(["p1"]).mine == ["p1"]


@pytest.mark.reliability
def test_a_dead_or_expired_owner_frees_its_claims(tmp_path: Path) -> None:
    """A claim of a process that is gone is free at once; one whose lease ran out (another host) after the lease."""
    path = tmp_path / "journal.sqlite"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = JudgeJournal(path, "run-dead")
    gone.pid = int(dead.stdout)
    assert gone.claim(["p1"]).mine == ["p1"]
    elsewhere = JudgeJournal(path, "run-elsewhere", lease_s=0.3)
    elsewhere.host = "another-host"
    assert elsewhere.claim(["p2"]).mine == ["p2"]
    mine = JudgeJournal(path, "run-next")
    claims = mine.claim(["p1", "p2"])
    assert claims.mine == ["p1"] and claims.held == {"p2": "run-elsewhere"}
    time.sleep(0.4)
    assert mine.claim(["p2"]).mine == ["p2"]


def test_answers_stay_unstored_until_the_warehouse_holds_them(tmp_path: Path) -> None:
    journal = JudgeJournal(tmp_path / "journal.sqlite", "run-a")
    journal.record("set", _row("p1"), final=True)
    journal.record("other", _row("p2"), final=True)
    assert [row["custom_id"] for row in journal.unstored("set")] == ["p1"]
    journal.mark_stored(["p1"])
    assert journal.unstored("set") == []


@pytest.mark.reliability
def test_the_heartbeat_renews_claims_and_releases_them_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    holder = JudgeJournal(path, "run-a", lease_s=0.3)
    holder.host = "another-host"  # only the lease keeps this claim alive for the other owner
    other = JudgeJournal(path, "run-b")
    with holder.heartbeat():
        holder.claim(["p1"])
        time.sleep(0.8)
        assert other.claim(["p1"]).held == {"p1": "run-a"}, "the lease lapsed while its owner was judging"
    assert other.claim(["p1"]).mine == ["p1"]


@pytest.mark.slow_fault
@pytest.mark.reliability
def test_two_runs_of_the_same_set_at_once_ask_each_prompt_once(tmp_path: Path, fault_ledger) -> None:
    """Two real processes judge the same 12-utterance set side by side (slow answers, so their runs overlap): the
    server is asked each prompt exactly once, both runs succeed, and the set has 12 judgments and 12 predictions."""
    ids = seed_set(tmp_path, "twice", 12)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}

    def slow(body: dict, call: int) -> Reply:
        return Reply(content=keep_prediction(body, call).content, delay_s=0.4)

    with FakeOpenAIServer(slow, max_lifetime_s=180) as server:
        command = [sys.executable, str(TESTS / "judge_run.py"), str(tmp_path), server.base_url, "twice"]
        runs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in "ab"]
        try:
            errors = [run.communicate(timeout=150)[1].decode() for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait(timeout=30)
        asked = Counter(user_message(body).split("clip ")[1].split()[0] for body in server.chat_bodies)
    assert [run.returncode for run in runs] == [0, 0], [error[-2000:] for error in errors]
    fault_ledger.record(paid_calls_repeated=sum(count - 1 for count in asked.values()))
    assert asked == Counter(ids)
    assert any("another run is asking" in error for error in errors), "the runs did not overlap"
    with warehouse.connect(tmp_path, read_only=True) as con:
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT custom_id) FROM llm_judgments").fetchone()
        predicted = con.execute("SELECT count(*) FROM predictions WHERE judgment_custom_id IS NOT NULL").fetchone()[0]
    fault_ledger.record(rows_lost=len(ids) - distinct, duplicate_rows=rows - distinct)
    assert (rows, distinct, predicted) == (12, 12, 12)
    assert journal_path(tmp_path).is_file()


@pytest.mark.reliability
def test_prompts_a_live_run_keeps_claimed_are_left_to_it_after_the_bounded_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run (on another host, renewing its lease) holds two prompts and never answers: this run waits at most
    CLAIM_WAIT_S, asks only the rest, and leaves those two on their fused labels marked `claimed` (never paid twice)."""
    from judge_run import run_refinement

    from emojudge_models.judge import JudgeConfig, build_requests
    from emojudge_models.judge import run as judge_run

    seed_set(tmp_path, "held", 4)
    monkeypatch.setattr(judge_run, "CLAIM_WAIT_S", 1.5)
    with warehouse.connect(tmp_path, read_only=True) as con:
        rows = con.execute(warehouse.sql_text("judge/judge_inputs.sql"), ["held"]).df().assign(split="unsplit")
    requests = build_requests(judge_run.judge_inputs(rows, "held", False), JudgeConfig.for_backend("openai-chat"))
    other = JudgeJournal(journal_path(tmp_path), "run-elsewhere", lease_s=3600)
    other.host = "another-host"
    held = [r.custom_id for r in requests if r.utterance_id in ("u00", "u01")]
    assert other.claim(held).mine == held
    with FakeOpenAIServer() as server:
        started = time.monotonic()
        result = run_refinement(tmp_path, server.base_url, "held", gate="off")
        elapsed = time.monotonic() - started
        asked = sorted(user_message(body).split("clip ")[1].split()[0] for body in server.chat_bodies)
    assert result.success and elapsed < 60
    assert asked == ["u02", "u03"]
    query = "SELECT utterance_id, judge_gate FROM predictions WHERE eval_set = 'held'"
    with warehouse.connect(tmp_path, read_only=True) as con:
        states = dict(con.execute(query).fetchall())
    assert states == {"u00": "claimed", "u01": "claimed", "u02": "off", "u03": "off"}
