"""The judge's run protocol for one evaluation set: reuse, evidence, gate, apply, call cap, judgment rows.

Judgments are identified by custom_id (eval set + utterance + hash of prompt, judge model and temperature): an
answered judgment is reused, never asked (or paid for) twice; a new prompt template or model is a new judgment.
Each result is written as it arrives (:class:`~emojudge_models.judge.ledger.JudgmentWriter`), so a killed run keeps
the answers it already had; an invalid answer is asked again on later runs until it has had
:data:`~emojudge_models.judge.result.MAX_ANSWER_ATTEMPTS` responses.

The judge is asked in two steps (:mod:`emojudge_models.judge.gate`): first the gate's evidence (labelled development
utterances, bounded per judge identity), then, once the gate has decided, only what it may apply: a closed gate
costs no further call. ``max_calls`` bounds the requests of one run.

:func:`judge_eval_set` is the whole protocol; the refinement asset reads the fused rows, calls it inside a judge
session and writes what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from emojudge_models.judge.batch import BatchesStillRunning
from emojudge_models.judge.cost import estimate_cost
from emojudge_models.judge.gate import (
    EVIDENCE_COLUMNS,
    UNAVAILABLE,
    CallCap,
    GateDecision,
    check_gate_mode,
    development_evidence,
    final_labels,
    gate_decision,
    split_evidence,
    unavailable_gate,
)
from emojudge_models.judge.journal import JudgeJournal
from emojudge_models.judge.ledger import DuckDBBatchLedger, JudgmentWriter
from emojudge_models.judge.local_server import JudgeUnavailable
from emojudge_models.judge.prompt import TEMPLATE_SHA256, JudgeInput
from emojudge_models.judge.requests import JudgeConfig, JudgeRequest, build_requests, select_for_scope
from emojudge_models.judge.result import MAX_ANSWER_ATTEMPTS, JudgeResult
from emojudge_models.store.warehouse import Connect, sql_text

JUDGMENT_COLUMNS = [
    "utterance_id",
    "custom_id",
    "backend",
    "judge_model",
    "temperature",
    "threshold",
    "prompt_template_sha256",
    "prompt_sha256",
    "fusion_model_key",
    "prosody_version",
    "batch_id",
    "request_json",
    "response_json",
    "fused_label",
    "label",
    "confidence",
    "rationale",
    "accepted",
    "answered",
    "attempts",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "requested_at",
    "completed_at",
    "run_id",
    "estimated_cost_usd",
]
"""Columns of ``llm_judgments`` a run writes (eval_set is added by the partition write)."""

CLAIM_WAIT_S = 600.0
"""How long a run waits for prompts another live run has claimed before leaving them to it (fused labels for now;
the next run reuses that run's answers)."""

JudgeCall = Callable[..., list[JudgeResult]]
"""A judge session's callable: ``(requests, on_result=...) -> results``."""


@dataclass(frozen=True)
class JudgeSettings:
    """What the protocol needs from the judge's configuration besides the request config."""

    gate: str
    evidence_max: int
    max_calls: int | None
    judged_splits: frozenset[str]
    show_probability: bool


class JudgeRunError(RuntimeError):
    """The run cannot finish now (batches still running); the message says what to do."""


@dataclass
class JudgeOutcome:
    """What one judged set produced: the new judgment rows, the final labels and the gate behind them."""

    requests: int
    reused: int
    evidence_requests: int
    new_rows: pd.DataFrame
    predictions: pd.DataFrame
    gate: GateDecision
    not_asked: dict[str, tuple[str, str]] = field(default_factory=dict)
    unavailable: str | None = None
    """``judge-unavailable: <why>`` when the judge could not be reached in this run."""

    @property
    def tokens(self) -> tuple[int, int]:
        return (
            int(self.new_rows["prompt_tokens"].fillna(0).sum()),
            int(self.new_rows["completion_tokens"].fillna(0).sum()),
        )


def judge_inputs(rows: pd.DataFrame, eval_set: str, show_probability: bool) -> list[JudgeInput]:
    """One :class:`JudgeInput` per fused row (``judge/judge_inputs.sql``)."""

    def text(value) -> str | None:
        return value if isinstance(value, str) else None

    return [
        JudgeInput(
            eval_set=eval_set,
            utterance_id=r.utterance_id,
            transcript=text(r.transcript) or "",
            speaker_id=text(r.speaker_id),
            gender=text(r.gender),
            prosody_description=text(r.prosody_description) or "no prosody description available",
            fused_label=r.fused_label,
            fused_probability=float(r.fused_probability) if show_probability else None,
            audio_label=text(r.audio_label),
            text_label=text(r.text_label),
        )
        for r in rows.itertuples()
    ]


def judgment_row(
    result: JudgeResult, config: JudgeConfig, context_row, run_id: str, earlier_attempts: int
) -> dict[str, Any]:
    """The ``llm_judgments`` row of one result (without eval_set)."""
    decision = result.decide(config.threshold)
    judgment = result.judgment
    attempts = earlier_attempts + int(result.responded)
    error = decision.error
    if result.responded and not result.answered and attempts >= MAX_ANSWER_ATTEMPTS:
        error = f"{error} (gave up after {attempts} invalid responses)"
    return {
        "utterance_id": result.request.utterance_id,
        "custom_id": result.custom_id,
        "backend": config.backend,
        "judge_model": config.model,
        "temperature": config.temperature,
        "threshold": config.threshold,
        "prompt_template_sha256": TEMPLATE_SHA256,
        "prompt_sha256": result.request.prompt_sha256,
        "fusion_model_key": context_row.fusion_model_key,
        "prosody_version": context_row.prosody_version,
        "batch_id": result.batch_id,
        "request_json": result.request.request_json,
        "response_json": result.response_json,
        "fused_label": result.request.fused_label,
        "label": judgment.label if judgment else None,
        "confidence": judgment.confidence if judgment else None,
        "rationale": judgment.rationale if judgment else None,
        "accepted": decision.accepted,
        "answered": result.answered,
        "attempts": attempts,
        "error": error,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "requested_at": result.requested_at,
        "completed_at": result.completed_at,
        "run_id": run_id,
        "estimated_cost_usd": estimate_cost(
            config.model,
            result.prompt_tokens or 0,
            result.completion_tokens or 0,
            batch=config.backend == "openai-batch",
        ),
    }


def judge_eval_set(
    rows: pd.DataFrame,
    *,
    eval_set: str,
    scope: str,
    config: JudgeConfig,
    settings: JudgeSettings,
    connect: Connect,
    journal: JudgeJournal,
    run_id: str,
    session: Callable[[DuckDBBatchLedger], AbstractContextManager[JudgeCall]],
    log: Callable[[str], None],
    warn: Callable[[str], None] | None = None,
    claim_poll_s: float = 1.0,
    claim_wait_s: float | None = None,
) -> JudgeOutcome:
    """Judge the fused ``rows`` of ``eval_set`` (``judge/judge_inputs.sql``) and decide their final labels.

    ``session(ledger)`` opens the judge (starting a local server where needed) on the first request only; a run
    whose requests are all stored or held back never starts it. ``journal`` (owned by this run) holds the claims and
    the paid answers (:mod:`emojudge_models.judge.journal`): answers an earlier run paid for but never stored are
    stored first, each prompt is claimed before it is sent, and prompts another live run holds are waited for.
    """
    warn = warn or log
    claim_wait_s = CLAIM_WAIT_S if claim_wait_s is None else claim_wait_s
    check_gate_mode(settings.gate)
    rows = rows.assign(split=rows["split"].fillna("unsplit"))
    in_splits = rows[rows["split"].isin(settings.judged_splits)]
    inputs = judge_inputs(in_splits, eval_set, settings.show_probability)
    requests = build_requests(select_for_scope(inputs, scope), config)
    by_utterance = rows.set_index("utterance_id")
    requested_ids = [r.custom_id for r in requests]
    recovered = _store_recovered(connect, journal, eval_set)
    if recovered:
        log(f"{recovered} judge answers paid for by an earlier run that died before storing them: stored, not asked")
    with connect() as con:
        stored = con.execute(sql_text("judge/answered_judgments.sql"), [requested_ids, MAX_ANSWER_ATTEMPTS]).df()
        responses = dict(con.execute(sql_text("judge/judgment_attempts.sql"), [requested_ids]).fetchall())
        elsewhere = _evidence_elsewhere(con, eval_set, config, settings.evidence_max)
    reused_ids = set(stored["custom_id"])
    if settings.gate == "off":
        evidence_requests, rest = [], list(requests)
    else:
        evidence_requests, rest = split_evidence(requests, rows, settings.evidence_max - len(elsewhere))
    log(
        f"{len(requests)} judgments in scope ({config.backend}, {config.model}): {len(reused_ids)} stored, "
        f"{len(evidence_requests)} for the gate's evidence ({len(elsewhere)} more from other sets)"
    )

    def to_row(result: JudgeResult) -> dict[str, Any]:
        context_row = by_utterance.loc[result.request.utterance_id]
        return judgment_row(result, config, context_row, run_id, responses.get(result.custom_id, 0))

    def keep(result: JudgeResult) -> None:
        """Make a paid answer durable before the worker that got it sends anything else."""
        row = to_row(result)
        journal.record(eval_set, row, final=bool(row["answered"]) or row["attempts"] >= MAX_ANSWER_ATTEMPTS)

    writer = JudgmentWriter(connect, eval_set, to_row, after_write=journal.mark_stored)
    cap = CallCap(settings.max_calls)
    not_asked: dict[str, tuple[str, str]] = {}
    unavailable: list[str] = []
    from_other_runs = 0
    ledger = DuckDBBatchLedger(connect, eval_set, config.judge_key, run_id)
    with ExitStack() as stack, writer:
        sessions: list[JudgeCall] = []
        stack.enter_context(journal.heartbeat())

        def send(todo: list[JudgeRequest], step: str) -> None:
            """Ask the judge (its session starts on the first request); an unreachable judge is noted once."""
            if unavailable:
                not_asked.update({r.utterance_id: ("judge-unavailable", f"not asked: {unavailable[0]}") for r in todo})
                journal.release(r.custom_id for r in todo)
                return
            log(f"asking the judge {len(todo)} {step}")
            try:
                if not sessions:
                    sessions.append(stack.enter_context(session(ledger)))
                sessions[0](todo, on_result=_with_progress(writer.add, len(todo), log), on_answer=keep)
            except JudgeUnavailable as error:
                unavailable.append(f"{UNAVAILABLE}: {str(error).splitlines()[0]}")
                not_asked.update({r.utterance_id: ("judge-unavailable", f"not asked: {unavailable[0]}") for r in todo})
            except BatchesStillRunning as running:
                raise JudgeRunError(
                    f"OpenAI batches still running ({', '.join(running.batch_ids)}); their ids are in "
                    "judge_batches: materialise again later to resume them without paying twice"
                ) from None
            if not unavailable and sessions and (why := getattr(sessions[0], "unavailable", None)):
                unavailable.append(why)

        def ask(todo: Sequence[JudgeRequest], step: str) -> None:
            """Claim and send what the cap allows; take answers other runs paid for; wait for prompts they hold."""
            nonlocal from_other_runs
            pending = [r for r in todo if r.custom_id not in reused_ids]
            waited_since, told = time.monotonic(), 0.0
            while pending and time.monotonic() - waited_since < claim_wait_s:
                claims = journal.claim([r.custom_id for r in pending])
                for row in claims.answered.values():
                    writer.add_row(row)
                    reused_ids.add(row["custom_id"])
                from_other_runs += len(claims.answered)
                mine = set(claims.mine)
                go, held = cap.take([r for r in pending if r.custom_id in mine])
                journal.release(r.custom_id for r in held)
                not_asked.update({r.utterance_id: ("capped", cap.reason()) for r in held})
                if held:
                    log(f"{len(held)} requests held back by the call cap")
                if go:
                    send(go, step)
                pending = [r for r in pending if r.custom_id in claims.held]
                if pending:
                    waited = time.monotonic() - waited_since
                    if waited >= told:
                        owners = ", ".join(sorted(set(claims.held.values())))
                        log(f"waiting for {len(pending)} prompts another run is asking ({owners}); not paid twice")
                        told = waited + 30.0
                    time.sleep(claim_poll_s)
            if pending:
                reason = (
                    f"not asked: still claimed by another run after {claim_wait_s:.0f} s; its answer is reused later"
                )
                not_asked.update({r.utterance_id: ("claimed", reason) for r in pending})
                log(f"{len(pending)} prompts left to the run that claimed them (asked there, not paid twice)")

        ask(evidence_requests, "for evidence")
        writer.flush()
        judged = _judged(stored, writer.rows)
        if unavailable:
            gate = unavailable_gate(unavailable[0])
        else:
            here = development_evidence(
                rows, judged[judged["custom_id"].isin({r.custom_id for r in evidence_requests})]
            )
            gate = gate_decision(pd.concat([here, elsewhere], ignore_index=True), settings.gate)
        wanted = [r for r in rest if gate.may_change(r.fused_label)]
        skipped = [r for r in rest if not gate.may_change(r.fused_label) and r.custom_id not in reused_ids]
        not_asked.update({r.utterance_id: (gate.state, gate.not_asked_reason(r.fused_label)) for r in skipped})
        ask(wanted, "that the gate may apply")
    if from_other_runs:
        log(f"{from_other_runs} answers taken from other runs that asked the same prompts")
    if unavailable:
        warn(f"judge {config.backend} {unavailable[0]}")
    new_rows = pd.DataFrame(writer.rows, columns=JUDGMENT_COLUMNS)
    judged = _judged(stored, writer.rows)
    predictions = final_labels(rows, judged, gate, not_asked).assign(run_id=run_id)
    return JudgeOutcome(
        len(requests),
        len(reused_ids),
        len(evidence_requests),
        new_rows,
        predictions,
        gate,
        not_asked,
        unavailable[0] if unavailable else None,
    )


def _store_recovered(connect: Connect, journal: JudgeJournal, eval_set: str) -> int:
    """Write the answers of ``eval_set`` the journal holds but the warehouse does not (their run died between)."""
    rows = journal.unstored(eval_set)
    if rows:
        with JudgmentWriter(connect, eval_set, lambda result: {}, after_write=journal.mark_stored) as writer:
            for row in rows:
                writer.add_row(row)
    return len(rows)


def _judged(stored: pd.DataFrame, new_rows: list[dict]) -> pd.DataFrame:
    """The judgments in hand (stored and asked in this run), indexed by utterance_id."""
    new = pd.DataFrame(new_rows, columns=JUDGMENT_COLUMNS)
    frames = [frame for frame in (stored[JUDGMENT_COLUMNS], new) if len(frame)]
    judged = pd.concat(frames) if frames else pd.DataFrame(columns=JUDGMENT_COLUMNS)
    return judged.set_index("utterance_id")


def _with_progress(on_result: Callable[[JudgeResult], None], total: int, log: Callable[[str], None], every: int = 10):
    """``on_result`` that also logs how many results have arrived and how many were answers, every ``every`` and at
    the end."""
    done = answered = 0

    def report(result: JudgeResult) -> None:
        nonlocal done, answered
        on_result(result)
        done += 1
        answered += int(result.answered)
        if done % every == 0 or done == total:
            log(f"judge results {done}/{total}: {answered} answered, {done - answered} errors")

    return report


def _evidence_elsewhere(con, eval_set: str, config: JudgeConfig, limit: int) -> pd.DataFrame:
    """Other sets' current labelled development judgments by this judge model, template and threshold (at most
    ``limit``), columns :data:`EVIDENCE_COLUMNS`."""
    found = con.execute(
        sql_text("judge/gate_evidence.sql"),
        [eval_set, config.model, TEMPLATE_SHA256, config.threshold, limit],
    ).df()
    return found[EVIDENCE_COLUMNS]
