-- v2 -> v3: predictions record the judge gate's state (open | closed | off) where a judgment exists.
ALTER TABLE IF EXISTS predictions ADD COLUMN IF NOT EXISTS judge_gate VARCHAR;
