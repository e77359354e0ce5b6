-- v1 -> v2: utterances say where their transcript came from (manifest | sidecar | asr:<model key>).
ALTER TABLE utterances ADD COLUMN IF NOT EXISTS transcript_source VARCHAR;
UPDATE utterances SET transcript_source = 'manifest' WHERE transcript IS NOT NULL AND transcript_source IS NULL;
