-- v7 -> v8: an episode segment may come from one channel of a split episode (EMOJUDGE_EPISODE_CHANNELS=split), and
-- an episode records the parameters its segments and speakers were made with, so a rescoring reuses them instead of
-- decoding, segmenting and diarizing the episode again. Rows written before keep NULL (mixed down; re-ingested once).
ALTER TABLE IF EXISTS utterances ADD COLUMN IF NOT EXISTS channel INTEGER;
ALTER TABLE IF EXISTS eval_sets ADD COLUMN IF NOT EXISTS ingest_key VARCHAR;
