-- v5 -> v6: fused_predictions records which modalities each prediction came from (audio+text, audio or text), so
-- an utterance missing one modality is scored from the other instead of losing its prediction. Rows written before
-- v6 keep NULL (they were all audio+text).
ALTER TABLE IF EXISTS fused_predictions ADD COLUMN IF NOT EXISTS modalities VARCHAR;
