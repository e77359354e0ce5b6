-- EmoJudge warehouse schema, current version (see schema_version below).
-- Idempotent: every statement is CREATE ... IF NOT EXISTS. Older files are brought up to this
-- version by store/sql/migrations/NNN_*.sql, applied in order by emojudge_models.store.warehouse.migrate().

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS eval_sets (
    name VARCHAR PRIMARY KEY,
    format VARCHAR NOT NULL,            -- msp | manifest | folder | episode
    path VARCHAR NOT NULL,              -- episode: the audio file in the inbox
    speakers_hint INTEGER,              -- episode: the speaker count given with `emojudge inbox add --speakers`
    split_source VARCHAR,               -- corpus | speaker-seeded | none
    split_seed INTEGER,
    added_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    ingest_key VARCHAR,                 -- episode: JSON of what shaped its segments and speakers (reused while equal)
    min_speakers INTEGER,               -- episode: bounds of the estimated speaker count (`inbox add --min-speakers`,
    max_speakers INTEGER                -- `--max-speakers`); NULL: no bound
);

CREATE TABLE IF NOT EXISTS utterances (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    split VARCHAR,                      -- train | development | test | NULL (unlabelled)
    emotion VARCHAR,
    arousal DOUBLE,
    valence DOUBLE,
    dominance DOUBLE,
    speaker_id VARCHAR,
    gender VARCHAR,
    transcript VARCHAR,
    transcript_source VARCHAR,          -- manifest | sidecar | asr:<model key> | NULL
    audio_path VARCHAR NOT NULL,
    audio_sha256 VARCHAR NOT NULL,
    duration_s DOUBLE NOT NULL,
    sample_rate_hz INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    episode_sha256 VARCHAR,             -- episode segments: the episode file's SHA-256; NULL for clips
    start_s DOUBLE,                     -- episode segments: [start_s, end_s) of the episode; NULL for clips
    end_s DOUBLE,
    language VARCHAR,                   -- stated (manifest column or set_languages), else detected; NULL: unknown
    run_id VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    channel INTEGER,                    -- split episodes: 1-based channel the segment was cut from; NULL: mixed down
    language_probability DOUBLE,        -- the detector's probability of a detected language; NULL: stated or none
    PRIMARY KEY (eval_set, utterance_id)
);

CREATE TABLE IF NOT EXISTS rejected_inputs (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR,
    audio_path VARCHAR,
    stage VARCHAR NOT NULL,             -- ingest | audio_features | text_features | asr | prosody | ...
    reason VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    rejected_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS encoders (
    encoder_key VARCHAR PRIMARY KEY,
    modality VARCHAR NOT NULL,          -- audio | text
    kind VARCHAR NOT NULL,              -- hf | acoustic | whisper-ct2
    spec_json VARCHAR NOT NULL,         -- everything hashed into the key
    frame_rate_hz DOUBLE,
    dim INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS feature_index (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    modality VARCHAR NOT NULL,          -- audio | text
    encoder_key VARCHAR NOT NULL,
    content_sha256 VARCHAR NOT NULL,    -- audio_sha256 for audio, sha256 of the text for text
    n_frames INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    dtype VARCHAR NOT NULL,
    file VARCHAR,                       -- Parquet shard relative to $EMOJUDGE_HOME/features (frames); NULL for text
    "row" INTEGER,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (eval_set, utterance_id, modality, encoder_key)
);

CREATE TABLE IF NOT EXISTS utterance_vectors (
    encoder_key VARCHAR NOT NULL,
    content_sha256 VARCHAR NOT NULL,
    modality VARCHAR NOT NULL,
    vector FLOAT[] NOT NULL,            -- audio: mean ++ std of frames; text: CLS
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (encoder_key, content_sha256)
);

CREATE TABLE IF NOT EXISTS waveform_stats (
    stats_key VARCHAR PRIMARY KEY,
    eval_sets VARCHAR NOT NULL,
    mean DOUBLE NOT NULL,
    std DOUBLE NOT NULL,
    n_clips INTEGER NOT NULL,
    n_samples BIGINT NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS asr_transcripts (
    asr_model_key VARCHAR NOT NULL,
    audio_sha256 VARCHAR NOT NULL,
    transcript VARCHAR NOT NULL,
    language VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (asr_model_key, audio_sha256)
);

CREATE TABLE IF NOT EXISTS model_registry (
    model_key VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,              -- audio_head | text_head | text_finetune | fusion
    task VARCHAR NOT NULL,              -- categorical | attributes
    encoder_key VARCHAR,
    input_model_keys VARCHAR[],         -- fusion: the model_keys of its inputs
    train_eval_sets VARCHAR[] NOT NULL,
    hyperparameters VARCHAR NOT NULL,   -- JSON
    dev_metric_name VARCHAR NOT NULL,
    dev_metric DOUBLE,
    path VARCHAR NOT NULL,
    git_revision VARCHAR,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    trained_on VARCHAR                  -- shipped:<corpus> | synthetic:<sets> | sets:<sets>; NULL before v12
);

CREATE TABLE IF NOT EXISTS logits (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    modality VARCHAR NOT NULL,          -- audio | text
    task VARCHAR NOT NULL,
    model_key VARCHAR NOT NULL,
    logits FLOAT[] NOT NULL,
    probabilities FLOAT[],              -- categorical only, in EMOTIONS order
    predicted_label VARCHAR,
    predicted_attributes FLOAT[],       -- attributes only: arousal, valence, dominance
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_set, utterance_id, modality, task)
);

CREATE TABLE IF NOT EXISTS fused_predictions (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    fusion_model_key VARCHAR NOT NULL,
    probabilities FLOAT[],
    predicted_label VARCHAR,
    predicted_attributes FLOAT[],
    audio_label VARCHAR,
    text_label VARCHAR,
    modalities_agree BOOLEAN,           -- NULL when only one modality was available
    run_id VARCHAR NOT NULL,
    modalities VARCHAR,                 -- audio+text (the fusion model) | audio | text (that modality alone); NULL before v6
    PRIMARY KEY (eval_set, utterance_id, task)
);

CREATE TABLE IF NOT EXISTS prosody (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    audio_sha256 VARCHAR NOT NULL,
    prosody_version VARCHAR NOT NULL,   -- code version + pitch tracker + thresholds hash
    duration_s DOUBLE NOT NULL,
    rms_mean_dbfs DOUBLE,
    rms_peak_dbfs DOUBLE,
    loudness_db DOUBLE,
    f0_median_hz DOUBLE,
    f0_p10_hz DOUBLE,
    f0_p90_hz DOUBLE,
    f0_range_hz DOUBLE,
    f0_range_semitones DOUBLE,
    voiced_fraction DOUBLE,
    words_per_s DOUBLE,
    syllables_per_s DOUBLE,
    clipped_fraction DOUBLE,
    flags VARCHAR[],                    -- silent | clipped | unvoiced | very_short
    description VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_set, utterance_id)
);

CREATE TABLE IF NOT EXISTS judge_batches (
    batch_id VARCHAR PRIMARY KEY,
    eval_set VARCHAR NOT NULL,
    judge_key VARCHAR NOT NULL,         -- hash of backend + model + temperature + prompt template
    input_file_id VARCHAR NOT NULL,
    custom_ids VARCHAR[] NOT NULL,
    status VARCHAR NOT NULL,
    output_file_id VARCHAR,
    error_file_id VARCHAR,
    attempt INTEGER NOT NULL DEFAULT 1,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    collected_at TIMESTAMP              -- results handed back; NULL while the batch is open (a run resumes it)
);

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
    estimated_cost_usd DOUBLE,          -- this judgment's last call in USD at list price (0 local, NULL unknown price)
    PRIMARY KEY (custom_id)
);

CREATE TABLE IF NOT EXISTS predictions (
    eval_set VARCHAR NOT NULL,
    utterance_id VARCHAR NOT NULL,
    fused_label VARCHAR NOT NULL,
    refined_label VARCHAR,
    final_label VARCHAR NOT NULL,
    changed BOOLEAN NOT NULL,
    judgment_custom_id VARCHAR,
    judge_gate VARCHAR,                 -- open | closed | no-evidence (both withhold changes) | off | per_change
                                        -- | capped (not asked: EMOJUDGE_JUDGE_MAX_CALLS); NULL: outside the scope
    run_id VARCHAR NOT NULL,
    judge_gate_reason VARCHAR,          -- why the gate applied or withheld the judge here, or why it was not asked
    PRIMARY KEY (eval_set, utterance_id)
);

-- The kinds of change (fused->judged pair, or *->judged label) the judge gate weighed for a set's predictions, from
-- labelled development judgments of the same judge model, template and threshold (emojudge_models/judge/gate.py).
CREATE TABLE IF NOT EXISTS judge_gate_evidence (
    eval_set VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,              -- sad->angry (a supported pair) or *->angry (the label's other changes)
    fused_label VARCHAR NOT NULL,       -- * for a per-label kind
    label VARCHAR NOT NULL,
    changes INTEGER NOT NULL,           -- accepted changes of this kind on development
    fixed INTEGER NOT NULL,             -- wrong fused label made right
    broken INTEGER NOT NULL,            -- right fused label made wrong
    applied BOOLEAN NOT NULL,           -- the gate lets this kind change final labels
    gate_mode VARCHAR NOT NULL,         -- development | per_change | off
    judge_model VARCHAR NOT NULL,
    prompt_template_sha256 VARCHAR NOT NULL,
    threshold DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_set, kind)
);

CREATE TABLE IF NOT EXISTS metrics (
    eval_set VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,             -- audio | text | fused | refined
    task VARCHAR NOT NULL,
    split VARCHAR NOT NULL,             -- the rows scored: train | development | test | all (every labelled row)
    metric VARCHAR NOT NULL,            -- f1_macro, accuracy, precision, recall, f1, support, ccc, ccc_mean, ...
    label VARCHAR,                      -- class or attribute for per-class rows; NULL for overall
    value DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL,
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS confusion_matrices (
    eval_set VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    true_label VARCHAR NOT NULL,
    predicted_label VARCHAR NOT NULL,
    n INTEGER NOT NULL,
    run_id VARCHAR NOT NULL,
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

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
