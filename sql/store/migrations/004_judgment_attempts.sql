-- v3 -> v4: llm_judgments count the 200 responses each judgment got, and `answered` means a valid judgment. Before
-- v4 `answered` meant "a 200 response came back", valid or not: those rows count one response, and the invalid ones
-- become unanswered, so they are asked again (up to the bound on responses). A file from before llm_judgments
-- existed gets the table here, in its v4 shape, so the updates below always have a table to run on.
ALTER TABLE IF EXISTS llm_judgments ADD COLUMN IF NOT EXISTS attempts INTEGER DEFAULT 0;
CREATE TABLE IF NOT EXISTS llm_judgments (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    custom_id VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    judge_model VARCHAR NOT NULL,
    temperature DOUBLE NOT NULL,
    threshold DOUBLE NOT NULL,
    prompt_template_sha256 VARCHAR NOT NULL,
    prompt_sha256 VARCHAR NOT NULL,
    fusion_model_key VARCHAR NOT NULL,
    prosody_version VARCHAR,
    batch_id VARCHAR,
    request_json VARCHAR NOT NULL,
    response_json VARCHAR,
    fused_label VARCHAR NOT NULL,
    label VARCHAR,
    confidence DOUBLE,
    rationale VARCHAR,
    accepted BOOLEAN NOT NULL,
    answered BOOLEAN NOT NULL,          -- a valid judgment came back (unanswered ones are asked again)
    attempts INTEGER DEFAULT 0,         -- 200 responses so far, valid or not; invalid ones stop at the bound
    error VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    requested_at TIMESTAMP,
    completed_at TIMESTAMP,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (custom_id)
);
UPDATE llm_judgments SET attempts = CASE WHEN answered THEN 1 ELSE 0 END;
UPDATE llm_judgments SET answered = false WHERE answered AND label IS NULL;
