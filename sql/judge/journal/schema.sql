-- The judge journal (one SQLite file per home, or a PostgreSQL database for a cluster): who is asking which prompt
-- now, and every paid answer as soon as it arrives, until the warehouse holds it.
CREATE TABLE IF NOT EXISTS judge_claims (
    custom_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,       -- run id of the claiming run
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL  -- unix seconds; renewed while the owner judges
);
CREATE TABLE IF NOT EXISTS judge_answers (
    custom_id TEXT PRIMARY KEY,
    eval_set TEXT NOT NULL,
    final INTEGER NOT NULL,    -- a valid judgment, or an invalid one past the bound: never asked again
    row_json TEXT NOT NULL,    -- the llm_judgments row
    stored INTEGER NOT NULL DEFAULT 0,
    recorded_at DOUBLE PRECISION NOT NULL
);
