-- v6 -> v7: the judge where it helps. predictions say why the gate decided as it did (also for utterances never
-- asked: gate closed, call cap), each judgment carries its estimated cost, and judge_gate_evidence holds the kinds
-- of change the gate weighed for each set. Rows written before v7 keep NULL.
ALTER TABLE IF EXISTS predictions ADD COLUMN IF NOT EXISTS judge_gate_reason VARCHAR;
ALTER TABLE IF EXISTS llm_judgments ADD COLUMN IF NOT EXISTS estimated_cost_usd DOUBLE;
CREATE TABLE IF NOT EXISTS judge_gate_evidence (
    eval_set VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    fused_label VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    changes INTEGER NOT NULL,
    fixed INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    applied BOOLEAN NOT NULL,
    gate_mode VARCHAR NOT NULL,
    judge_model VARCHAR NOT NULL,
    prompt_template_sha256 VARCHAR NOT NULL,
    threshold DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_set, kind)
);
