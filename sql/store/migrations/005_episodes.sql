-- v4 -> v5: podcast episodes. Utterances may be segments of an episode (its hash, start and end; NULL for clips),
-- an evaluation set may be an episode (format 'episode') with a speaker-count hint, diarized speakers get a table,
-- and episode_emotions changes from one row per segment (never written before v5) to one row per episode, speaker
-- and time window.
ALTER TABLE utterances ADD COLUMN IF NOT EXISTS episode_sha256 VARCHAR;
ALTER TABLE utterances ADD COLUMN IF NOT EXISTS start_s DOUBLE;
ALTER TABLE utterances ADD COLUMN IF NOT EXISTS end_s DOUBLE;
ALTER TABLE eval_sets ADD COLUMN IF NOT EXISTS speakers_hint INTEGER;
CREATE TABLE IF NOT EXISTS speakers (
    eval_set VARCHAR NOT NULL,
    speaker_id VARCHAR NOT NULL,        -- <episode>:S<k>, k by first appearance
    episode_sha256 VARCHAR NOT NULL,
    n_segments INTEGER NOT NULL,
    speech_s DOUBLE NOT NULL,
    centroid FLOAT[] NOT NULL,          -- mean of the unit-length 256-d Resemblyzer vectors of the speaker's segments
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_set, speaker_id)
);
DROP TABLE IF EXISTS episode_emotions;
CREATE TABLE IF NOT EXISTS episode_emotions (
    eval_set VARCHAR NOT NULL,
    episode_id VARCHAR NOT NULL,        -- the episode's evaluation set (ep-<sha[:12]>)
    speaker_id VARCHAR NOT NULL,        -- <episode>:S<k>
    window_start_s DOUBLE NOT NULL,
    window_end_s DOUBLE NOT NULL,
    speech_s DOUBLE NOT NULL,           -- seconds this speaker spoke in the window
    share_angry DOUBLE NOT NULL,
    share_sad DOUBLE NOT NULL,
    share_happy DOUBLE NOT NULL,
    share_surprise DOUBLE NOT NULL,
    share_fear DOUBLE NOT NULL,
    share_disgust DOUBLE NOT NULL,
    share_contempt DOUBLE NOT NULL,
    share_neutral DOUBLE NOT NULL,
    arousal DOUBLE,                     -- seconds-weighted means where an attributes model exists, else NULL
    valence DOUBLE,
    dominance DOUBLE,
    fusion_model_key VARCHAR,           -- the fusion model whose predictions were summed up
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_set, speaker_id, window_start_s)
);
