"""Refinement: the LLM judge over fused predictions (table llm_judgments) and the final labels (predictions).

The protocol (reuse, the gate's evidence, the gate, the call cap, the judgment rows) is
:func:`emojudge_models.judge.run.judge_eval_set`; this asset reads the fused rows, calls it inside the judge resource's
session and writes and describes what it returns.
"""

import dagster as dg

from emojudge_models.judge import TEMPLATE_SHA256, estimate_cost
from emojudge_models.judge.gate import check_gate_mode
from emojudge_models.judge.journal import JudgeJournal, journal_path
from emojudge_models.judge.run import JudgeRunError, JudgeSettings, judge_eval_set
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, rounded
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import JudgeResource, WarehouseResource


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
    try:
        outcome = judge_eval_set(
            rows,
            eval_set=eval_set,
            scope=scope,
            config=config,
            settings=JudgeSettings(
                judge.gate, judge.evidence_max, judge.max_calls, frozenset(judge.splits), judge.show_probability
            ),
            connect=warehouse_db.connect,
            journal=JudgeJournal(judge.journal or journal_path(warehouse_db.home_path), owner=run_id),
            run_id=run_id,
            session=judge.session,
            log=context.log.info,
            warn=context.log.error,
        )
    except JudgeRunError as error:
        raise dg.Failure(str(error)) from None
    gate, new_rows, predictions = outcome.gate, outcome.new_rows, outcome.predictions
    evidence_table = gate.kinds_frame()
    with warehouse_db.connect() as con:
        warehouse.write_partitions(
            con,
            eval_set,
            [
                warehouse.PartitionWrite("predictions", predictions),
                warehouse.PartitionWrite(
                    "judge_gate_evidence",
                    evidence_table.assign(
                        gate_mode=judge.gate,
                        judge_model=config.model,
                        prompt_template_sha256=TEMPLATE_SHA256,
                        threshold=config.threshold,
                        run_id=run_id,
                    ),
                ),
            ],
        )
        set_spend = con.execute(warehouse.sql_text("judge/set_spend.sql"), [eval_set]).fetchone()
    (context.log.info if gate.applies_judgments else context.log.warning)(f"judge {gate.reason}")
    tokens_in, tokens_out = outcome.tokens
    cost = estimate_cost(config.model, tokens_in, tokens_out, batch=config.backend == "openai-batch")
    not_asked = outcome.not_asked.values()
    yield dg.MaterializeResult(
        asset_key="llm_judgments",
        metadata={
            "judge": "unavailable" if outcome.unavailable else "answered",
            "judge_unavailable": outcome.unavailable or "",
            "backend": config.backend,
            "judge_model": config.model,
            "threshold": config.threshold,
            "temperature": config.temperature,
            "scope": scope,
            "prompt_template_sha256": TEMPLATE_SHA256,
            "requests_in_scope": outcome.requests,
            "reused": outcome.reused,
            "evidence_requests": outcome.evidence_requests,
            "sent": len(new_rows),
            "not_asked_gate": sum(state not in ("capped", "claimed", "judge-unavailable") for state, _ in not_asked),
            "not_asked_call_cap": sum(state == "capped" for state, _ in not_asked),
            "not_asked_claimed_elsewhere": sum(state == "claimed" for state, _ in not_asked),
            "not_asked_judge_unavailable": sum(state == "judge-unavailable" for state, _ in not_asked),
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
