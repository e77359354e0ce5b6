-- v12 -> v13: an inbox episode keeps the bounds given with `emojudge inbox add --min-speakers/--max-speakers`
-- (the estimated speaker count stays within them), beside speakers_hint (the count). NULL: no bound given.
ALTER TABLE IF EXISTS eval_sets ADD COLUMN IF NOT EXISTS min_speakers INTEGER;
ALTER TABLE IF EXISTS eval_sets ADD COLUMN IF NOT EXISTS max_speakers INTEGER;
