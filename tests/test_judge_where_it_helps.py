"""The judge where it helps, through the real ``refinement`` asset and a scripted judge on a local server:
evidence first and bounded, no request a closed gate would discard, the per-change gate, the call cap and the spend.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from batch_api_server import FakeOpenAIServer, Reply, judgment_reply, user_message
from judge_run import run_refinement, seed_set
from sklearn.metrics import f1_score

from emojudge_models.judge.cost import estimate_cost
from emojudge_models.judge.gate import MIN_SUPPORT, gate_decision
from emojudge_models.judge.requests import DEFAULT_BATCH_MODEL
from emojudge_models.store import warehouse

OTHERS = ["sad", "happy", "neutral", "fear"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-where-it-helps-0123456789")


def clip(body: dict) -> str:
    return re.search(r"clip (u\d+) says", user_message(body)).group(1)


def angry_only_judge(truth: dict[str, str | None]):
    """Right whenever it says "angry", wrong otherwise: angry clips are called angry, the rest get a wrong label."""

    def respond(body: dict, call: int) -> Reply:
        emotion = truth[clip(body)]
        if emotion == "angry":
            return judgment_reply("angry", 0.95)
        return judgment_reply("surprise" if emotion != "surprise" else "sad", 0.95)

    return respond


def mixed_set(home: Path, eval_set: str) -> dict[str, str | None]:
    """40 labelled development clips and 20 test clips: the angry ones fused as neutral (wrong), the rest right."""
    splits = ["development"] * 40 + ["test"] * 20
    emotions = [("angry" if i % 4 == 0 else OTHERS[i % len(OTHERS)]) for i in range(60)]
    fused = ["neutral" if e == "angry" else e for e in emotions]
    ids = seed_set(home, eval_set, 60, split=splits, emotion=emotions, fused=fused)
    return dict(zip(ids, emotions, strict=True))


def predictions(home: Path, eval_set: str) -> pd.DataFrame:
    with warehouse.connect(home, read_only=True) as con:
        return con.execute(
            "SELECT p.*, u.split, u.emotion FROM predictions p JOIN utterances u USING (eval_set, utterance_id) "
            "WHERE eval_set = ? ORDER BY utterance_id",
            [eval_set],
        ).df()


def macro_f1(frame: pd.DataFrame, column: str) -> float:
    return f1_score(frame["emotion"], frame[column], average="macro", zero_division=0)


def test_the_per_change_gate_applies_the_angry_changes_only_and_beats_fused(tmp_path: Path) -> None:
    truth = mixed_set(tmp_path, "mixed")
    with FakeOpenAIServer(angry_only_judge(truth)) as server:
        assert run_refinement(tmp_path, server.base_url, "mixed", gate="per_change").success
        asked = [clip(body) for body in server.chat_bodies]
    out = predictions(tmp_path, "mixed")
    changed = out[out["changed"]]
    assert len(changed) == 15 and set(changed["final_label"]) == {"angry"}
    assert (changed["emotion"] == "angry").all() and (changed["fused_label"] == "neutral").all()
    assert macro_f1(out, "final_label") > macro_f1(out, "fused_label")
    test = out[out["split"] == "test"]
    assert macro_f1(test, "final_label") > macro_f1(test, "fused_label")
    # the only applied kind starts from neutral, so test clips fused as anything else were not asked
    test_ids = set(test["utterance_id"])
    assert {u for u in asked if u in test_ids} == set(test[test["fused_label"] == "neutral"]["utterance_id"])
    not_asked = out[out["judgment_custom_id"].isna()]
    assert len(not_asked) == len(test_ids) - 10 and set(not_asked["judge_gate"]) == {"per_change"}
    assert not_asked["judge_gate_reason"].str.startswith("not asked: no applied kind of change starts from").all()
    assert set(changed["judge_gate_reason"].str.split(":").str[0]) == {"neutral->angry applied"}
    with warehouse.connect(tmp_path, read_only=True) as con:
        evidence = con.execute(
            "SELECT kind, changes, fixed, broken, net_fixed, applied FROM v_judge_gate_evidence "
            "WHERE eval_set = 'mixed' ORDER BY kind"
        ).fetchall()
    assert ("neutral->angry", 10, 10, 0, 10, True) in evidence
    assert [row for row in evidence if row[5]] == [("neutral->angry", 10, 10, 0, 10, True)]
    assert sum(row[3] for row in evidence) == 30, "each of the 30 other development clips was broken"


def test_the_global_gate_closes_on_the_same_judge_and_asks_nothing_more(tmp_path: Path) -> None:
    truth = mixed_set(tmp_path, "mixed")
    with FakeOpenAIServer(angry_only_judge(truth)) as server:
        assert run_refinement(tmp_path, server.base_url, "mixed").success
        asked = {clip(body) for body in server.chat_bodies}
    out = predictions(tmp_path, "mixed")
    assert asked == set(out[out["split"] == "development"]["utterance_id"]) and len(server.chat_bodies) == 40
    assert not out["changed"].any() and set(out["judge_gate"]) == {"closed"}
    test = out[out["split"] == "test"]
    assert test["judgment_custom_id"].isna().all()
    assert test["judge_gate_reason"].str.startswith("not asked: gate closed, final labels keep the fused ones").all()


def test_a_closed_gate_sends_no_request_for_an_unlabelled_set(tmp_path: Path) -> None:
    truth = mixed_set(tmp_path, "mixed")
    with FakeOpenAIServer(angry_only_judge(truth)) as server:
        assert run_refinement(tmp_path, server.base_url, "mixed").success
    seed_set(tmp_path, "inbox", 12)
    with FakeOpenAIServer(angry_only_judge({f"u{i:02d}": None for i in range(12)})) as inbox_server:
        assert run_refinement(tmp_path, inbox_server.base_url, "inbox").success
        assert inbox_server.chat_bodies == [], "the development evidence closed the gate: nothing to ask"
    out = predictions(tmp_path, "inbox")
    assert len(out) == 12 and set(out["judge_gate"]) == {"closed"} and not out["changed"].any()
    assert out["judge_gate_reason"].str.contains("30 right->wrong, 10 wrong->right").all()


def test_the_evidence_bound_is_honoured_per_judge_identity(tmp_path: Path) -> None:
    """A judge that breaks every label: at most EMOJUDGE_JUDGE_EVIDENCE_MAX development judgments over all sets."""
    seed_set(tmp_path, "dev-a", 12, split="development", emotion="sad", fused="sad")
    seed_set(tmp_path, "dev-b", 12, split="development", emotion="sad", fused="sad")
    with FakeOpenAIServer(lambda body, call: judgment_reply("fear", 0.95)) as server:
        assert run_refinement(tmp_path, server.base_url, "dev-a", evidence_max=5).success
        first = [clip(body) for body in server.chat_bodies]
        assert run_refinement(tmp_path, server.base_url, "dev-b", evidence_max=8).success
        second = [clip(body) for body in server.chat_bodies[len(first) :]]
        assert run_refinement(tmp_path, server.base_url, "dev-a", evidence_max=5).success
        assert len(server.chat_bodies) == len(first) + len(second), "a rerun reuses its evidence"
    assert len(first) == 5 and len(second) == 3
    a, b = predictions(tmp_path, "dev-a"), predictions(tmp_path, "dev-b")
    assert a["judgment_custom_id"].notna().sum() == 5 and b["judgment_custom_id"].notna().sum() == 3
    assert set(a["judge_gate"]) == set(b["judge_gate"]) == {"closed"} and not (a["changed"] | b["changed"]).any()
    assert b["judge_gate_reason"].str.contains("on 8 labelled development judgments").all()


def test_the_call_cap_keeps_the_rest_fused_and_the_spend_view_sums_tokens(tmp_path: Path) -> None:
    seed_set(tmp_path, "capped", 6)
    seed_set(tmp_path, "other", 3)
    with FakeOpenAIServer(lambda body, call: judgment_reply("sad", 0.95)) as server:
        assert run_refinement(tmp_path, server.base_url, "capped", gate="off", max_calls=4).success
        assert len(server.chat_bodies) == 4
        assert run_refinement(tmp_path, server.base_url, "capped", gate="off", max_calls=4).success
        assert run_refinement(tmp_path, server.base_url, "other", gate="off").success
        assert len(server.chat_bodies) == 9, "the second run asks the 2 held back, then 3 for the other set"
    with warehouse.connect(tmp_path, read_only=True) as con:
        spend = con.execute(
            "SELECT eval_set, calls, answered, prompt_tokens, completion_tokens, estimated_cost_usd "
            "FROM v_judge_spend ORDER BY eval_set, calls DESC"
        ).fetchall()
        totals = con.execute(warehouse.sql_text("judge/set_spend.sql"), ["capped"]).fetchone()
    price = estimate_cost(DEFAULT_BATCH_MODEL, 100, 20, batch=False)
    assert [row[:5] for row in spend] == [
        ("capped", 4, 4, 400, 80),
        ("capped", 2, 2, 200, 40),
        ("other", 3, 3, 300, 60),
    ]
    assert [row[5] for row in spend] == pytest.approx([4 * price, 2 * price, 3 * price])
    assert totals[:3] == (6, 600, 120) and totals[3] == pytest.approx(6 * price)


def test_a_capped_run_records_the_held_back_utterances(tmp_path: Path) -> None:
    seed_set(tmp_path, "capped", 6)
    with FakeOpenAIServer(lambda body, call: judgment_reply("sad", 0.95)) as server:
        assert run_refinement(tmp_path, server.base_url, "capped", gate="off", max_calls=4).success
    out = predictions(tmp_path, "capped")
    held = out[out["judge_gate"] == "capped"]
    assert len(held) == 2 and held["judgment_custom_id"].isna().all() and (held["final_label"] == "neutral").all()
    assert held["judge_gate_reason"].str.contains("EMOJUDGE_JUDGE_MAX_CALLS=4").all()
    applied = out[out["judge_gate"] == "off"]
    assert len(applied) == 4 and (applied["final_label"] == "sad").all()


def _evidence(rows: list[tuple[str, str, bool, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["fused_label", "label", "accepted", "emotion"])


def test_per_change_kinds_fall_back_to_the_judged_label_below_the_minimum_support() -> None:
    fixes = [("sad", "angry", True, "angry")] * MIN_SUPPORT
    scattered = [("happy", "angry", True, "angry"), ("fear", "angry", True, "angry"), ("neutral", "angry", True, "sad")]
    breaks = [("neutral", "sad", True, "neutral")] * (MIN_SUPPORT + 1) + [("fear", "happy", True, "happy")]
    decision = gate_decision(_evidence(fixes + scattered + breaks), "per_change")
    table = decision.kinds_frame().set_index("kind")
    assert table.loc["sad->angry", ["changes", "fixed", "broken", "applied"]].tolist() == [MIN_SUPPORT, 5, 0, True]
    assert table.loc["*->angry", ["changes", "fixed", "broken", "applied"]].tolist() == [3, 2, 0, False]
    assert table.loc["neutral->sad", ["broken", "applied"]].tolist() == [MIN_SUPPORT + 1, False]
    assert decision.state == "per_change"
    assert decision.applies("sad", "angry") and not decision.applies("happy", "angry")
    assert not decision.applies("neutral", "sad") and not decision.applies("sad", "fear")
    assert decision.may_change("sad") and not decision.may_change("neutral")
    harmful = gate_decision(_evidence(breaks), "per_change")
    assert harmful.state == "closed" and not harmful.may_change("neutral")


def test_requests_are_spread_over_the_slots_one_in_flight_each() -> None:
    """Two endpoints (the local judge's slots) and two workers: each endpoint answers with one request at a time."""
    from emojudge_models.judge import ChatJudge, JudgeConfig, JudgeInput, build_requests

    def slow(body: dict, call: int) -> Reply:
        return Reply(content=judgment_reply("sad", 0.9).content, delay_s=0.2)

    inputs = [
        JudgeInput("s", f"u{i}", f"clip u{i:02d} says hello", None, None, "Quiet.", "neutral", None) for i in range(8)
    ]
    requests = build_requests(inputs, JudgeConfig())
    with FakeOpenAIServer(slow) as first, FakeOpenAIServer(slow) as second:
        results = ChatJudge([first.base_url, second.base_url], max_workers=2, max_retries=0).judge(requests)
    assert [r.custom_id for r in results] == [r.custom_id for r in requests] and all(r.answered for r in results)
    assert len(first.chat_bodies) + len(second.chat_bodies) == 8
    assert len(first.chat_bodies) >= 1 and len(second.chat_bodies) >= 1
    assert first.max_in_flight == second.max_in_flight == 1


def test_a_pool_that_cannot_start_leaves_no_server(tmp_path: Path) -> None:
    from emojudge_models.judge import LocalJudgePool

    pool = LocalJudgePool(tmp_path / "nothing.gguf", slots=2, n_threads=2)
    assert [server.n_threads for server in pool.servers] == [1, 1]
    with pytest.raises(FileNotFoundError, match=r"nothing\.gguf"), pool:
        pass
    assert all(server.process is None and server.port is None for server in pool.servers)
