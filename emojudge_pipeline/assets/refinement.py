"""Refinement: the LLM judge over fused predictions (table llm_judgments) and the final labels (predictions).

Judgments are identified by custom_id (eval set + utterance + hash of prompt, judge model and temperature): an
answered judgment is reused, never asked (or paid for) twice; a new prompt template or model is a new judgment.
Each result is written as it arrives (``JudgmentWriter``), so a killed run keeps the answers it already had; an
invalid answer is asked again on later runs until it has had ``MAX_ANSWER_ATTEMPTS`` responses.

The judge is asked in two steps (``emojudge_models/judge/gate.py``): first the gate's evidence (labelled development
utterances, bounded per judge identity), then, once the gate has decided, only what it may apply: a closed gate
costs no further call. ``EMOJUDGE_JUDGE_MAX_CALLS`` bounds the requests of one run.
"""

from contextlib import ExitStack

import dagster as dg
import pandas as pd

from emojudge_models.judge import (
    MAX_ANSWER_ATTEMPTS,
    TEMPLATE_SHA256,
    BatchesStillRunning,
    JudgeInput,
    JudgeResult,
    build_requests,
    estimate_cost,
    select_for_scope,
)
from emojudge_models.judge.gate import (
    EVIDENCE_COLUMNS,
    CallCap,
    check_gate_mode,
    development_evidence,
    final_labels,
    gate_decision,
    split_evidence,
)
from emojudge_models.judge.ledger import DuckDBBatchLedger, JudgmentWriter
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, rounded
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import JudgeResource, WarehouseResource


def _inputs(rows: pd.DataFrame, eval_set: str, show_probability: bool) -> list[JudgeInput]:
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


def _judgment_row(result: JudgeResult, config, context_row, run_id: str, earlier_attempts: int) -> dict:
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


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "llm_judgments",
            deps=["fused_predictions", "prosody"],
            kinds={"openai", "duckdb"},
            description="One row per LLM judgment with the request, raw answer, parsed label, confidence, tokens, "
            "estimated cost and the keys of everything it saw.",
        ),
        dg.AssetSpec(
            "predictions",
            deps=["fused_predictions"],
            kinds={"duckdb"},
            description="Fused, refined and final label per utterance, linked to its judgment, with the judge "
            "gate's state and reason (and its evidence table in judge_gate_evidence).",
        ),
    ],
    partitions_def=eval_sets_partitions,
    group_name="refinement",
)
def refinement(context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, judge: JudgeResource):
    eval_set = context.partition_key
    run_id = context.run.run_id
    config = judge.config()
    scope = judge.scope_for(warehouse_db.eval_set(eval_set)["format"])
    try:
        check_gate_mode(judge.gate)
    except ValueError as error:
        raise dg.Failure(f"EMOJUDGE_JUDGE_GATE: {error}") from None
    with warehouse_db.connect() as con:
        rows = con.execute(warehouse.sql_text("judge/judge_inputs.sql"), [eval_set]).df()
    rows["split"] = rows["split"].fillna("unsplit")
    in_splits = rows[rows["split"].isin(judge.judged_splits())]
    inputs = select_for_scope(_inputs(in_splits, eval_set, judge.show_probability), scope)
    requests = build_requests(inputs, config)
    by_utterance = rows.set_index("utterance_id")
    requested_ids = [r.custom_id for r in requests]
    with warehouse_db.connect() as con:
        stored = con.execute(
            warehouse.sql_text("judge/answered_judgments.sql"), [requested_ids, MAX_ANSWER_ATTEMPTS]
        ).df()
        responses = dict(con.execute(warehouse.sql_text("judge/judgment_attempts.sql"), [requested_ids]).fetchall())
        elsewhere = _evidence_elsewhere(con, eval_set, config, judge.evidence_max)
    reused_ids = set(stored["custom_id"])
    if judge.gate == "off":
        evidence_requests, rest = [], list(requests)
    else:
        evidence_requests, rest = split_evidence(requests, rows, judge.evidence_max - len(elsewhere))
    context.log.info(
        f"{len(requests)} judgments in scope ({config.backend}, {config.model}): {len(reused_ids)} stored, "
        f"{len(evidence_requests)} for the gate's evidence ({len(elsewhere)} more from other sets)"
    )
    writer = JudgmentWriter(
        warehouse_db.connect,
        eval_set,
        lambda r: _judgment_row(
            r, config, by_utterance.loc[r.request.utterance_id], run_id, responses.get(r.custom_id, 0)
        ),
    )
    cap = CallCap(judge.max_calls)
    not_asked: dict[str, tuple[str, str]] = {}
    ledger = DuckDBBatchLedger(warehouse_db.connect, eval_set, config.judge_key, run_id)
    with ExitStack() as stack, writer:
        sessions: list = []

        def ask(todo: list, step: str) -> None:
            """Send what the cap allows (the judge session starts on the first request); hold back the rest."""
            send, held = cap.take([r for r in todo if r.custom_id not in reused_ids])
            not_asked.update({r.utterance_id: ("capped", cap.reason()) for r in held})
            if not send:
                return
            context.log.info(f"asking the judge {len(send)} {step} ({len(held)} held back by the call cap)")
            if not sessions:
                sessions.append(stack.enter_context(judge.session(ledger)))
            try:
                sessions[0](send, on_result=_with_progress(writer.add, len(send), context.log.info))
            except BatchesStillRunning as running:
                raise dg.Failure(
                    f"OpenAI batches still running ({', '.join(running.batch_ids)}); their ids are in "
                    "judge_batches: materialise again later to resume them without paying twice"
                ) from None

        ask(evidence_requests, "for evidence")
        writer.flush()
        judged = _judged(stored, writer.rows)
        here = development_evidence(rows, judged[judged["custom_id"].isin({r.custom_id for r in evidence_requests})])
        gate = gate_decision(pd.concat([here, elsewhere], ignore_index=True), judge.gate)
        wanted = [r for r in rest if gate.may_change(r.fused_label)]
        skipped = [r for r in rest if not gate.may_change(r.fused_label) and r.custom_id not in reused_ids]
        not_asked.update({r.utterance_id: (gate.state, gate.not_asked_reason(r.fused_label)) for r in skipped})
        ask(wanted, "that the gate may apply")
    new_rows = pd.DataFrame(writer.rows, columns=JUDGMENT_COLUMNS)
    judged = _judged(stored, writer.rows)
    predictions = final_labels(rows, judged, gate, not_asked).assign(run_id=run_id)
    evidence_table = gate.kinds_frame()
    with warehouse_db.connect() as con:
        warehouse.replace_partition(con, "predictions", eval_set, predictions)
        warehouse.replace_partition(
            con,
            "judge_gate_evidence",
            eval_set,
            evidence_table.assign(
                gate_mode=judge.gate,
                judge_model=config.model,
                prompt_template_sha256=TEMPLATE_SHA256,
                threshold=config.threshold,
                run_id=run_id,
            ),
        )
        set_spend = con.execute(warehouse.sql_text("judge/set_spend.sql"), [eval_set]).fetchone()
    if not gate.applies_judgments:
        context.log.warning(f"judge {gate.reason}")
    else:
        context.log.info(f"judge {gate.reason}")
    tokens_in = int(new_rows["prompt_tokens"].fillna(0).sum())
    tokens_out = int(new_rows["completion_tokens"].fillna(0).sum())
    cost = estimate_cost(config.model, tokens_in, tokens_out, batch=config.backend == "openai-batch")
    yield dg.MaterializeResult(
        asset_key="llm_judgments",
        metadata={
            "backend": config.backend,
            "judge_model": config.model,
            "threshold": config.threshold,
            "temperature": config.temperature,
            "scope": scope,
            "prompt_template_sha256": TEMPLATE_SHA256,
            "requests_in_scope": len(requests),
            "reused": len(reused_ids),
            "evidence_requests": len(evidence_requests),
            "sent": len(new_rows),
            "not_asked_gate": sum(state != "capped" for state, _ in not_asked.values()),
            "not_asked_call_cap": sum(state == "capped" for state, _ in not_asked.values()),
            "answered": int(new_rows["answered"].sum()),
            "errors": int(new_rows["error"].notna().sum()),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "estimated_cost_usd": _usd(cost),
            "set_calls": int(set_spend[0]),
            "set_tokens_in": int(set_spend[1]),
            "set_tokens_out": int(set_spend[2]),
            "set_estimated_cost_usd": _usd(set_spend[3]),
            "examples": markdown_preview(
                new_rows[["utterance_id", "fused_label", "label", "confidence", "accepted", "error"]]
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key="predictions",
        metadata={
            "rows": len(predictions),
            "judged": int(predictions["judgment_custom_id"].notna().sum()),
            "changed_by_judge": int(predictions["changed"].sum()),
            "judge_gate": gate.state,
            "judge_gate_mode": judge.gate,
            "judge_gate_reason": gate.reason,
            "judge_gate_evidence": markdown_preview(evidence_table, rows=len(evidence_table)),
            "dagster/row_count": len(predictions),
        },
    )


def _usd(cost: float | None):
    return dg.MetadataValue.float(rounded(float(cost), 6)) if cost is not None else "unknown price"


def _judged(stored: pd.DataFrame, new_rows: list[dict]) -> pd.DataFrame:
    """The judgments in hand (stored and asked in this run), indexed by utterance_id."""
    new = pd.DataFrame(new_rows, columns=JUDGMENT_COLUMNS)
    frames = [frame for frame in (stored[JUDGMENT_COLUMNS], new) if len(frame)]
    judged = pd.concat(frames) if frames else pd.DataFrame(columns=JUDGMENT_COLUMNS)
    return judged.set_index("utterance_id")


def _with_progress(on_result, total: int, log, every: int = 10):
    """``on_result`` that also logs how many answers have arrived, every ``every`` and at the end."""
    done = 0

    def report(result: JudgeResult) -> None:
        nonlocal done
        on_result(result)
        done += 1
        if done % every == 0 or done == total:
            log(f"judge answered {done}/{total}")

    return report


def _evidence_elsewhere(con, eval_set: str, config, limit: int) -> pd.DataFrame:
    """Other sets' current labelled development judgments by this judge model, template and threshold (at most
    ``limit``), columns :data:`EVIDENCE_COLUMNS`."""
    found = con.execute(
        warehouse.sql_text("judge/gate_evidence.sql"),
        [eval_set, config.model, TEMPLATE_SHA256, config.threshold, limit],
    ).df()
    return found[EVIDENCE_COLUMNS]
