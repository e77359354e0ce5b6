-- Views over the warehouse contract; recreated on every writable connect (CREATE OR REPLACE is idempotent).

-- One row per utterance: truth, each stage's label, the judge's verdict, the final label, and the keys that
-- trace them. judge_accepted_by_rule: the paper's confidence rule accepted the judge's label; changed_by_judge:
-- it became the final label (the gate, judge_gate, decides). audio_model_trained_on / text_model_trained_on: what the
-- model that scored the utterance was trained on (shipped:<corpus>, synthetic:<sets> or sets:<sets>); language: stated,
-- else detected (with language_probability). start_s / end_s: an episode segment's place in its episode (NULL for clips).
CREATE OR REPLACE VIEW v_predictions AS
SELECT
    u.eval_set,
    u.utterance_id,
    u.split,
    u.speaker_id,
    u.gender,
    u.emotion AS true_label,
    a.predicted_label AS audio_label,
    t.predicted_label AS text_label,
    f.predicted_label AS fused_label,
    list_max(f.probabilities) AS fused_probability,
    j.label AS judge_label,
    j.confidence AS judge_confidence,
    j.rationale AS judge_rationale,
    j.accepted AS judge_accepted_by_rule,
    p.refined_label,
    coalesce(p.final_label, f.predicted_label) AS final_label,
    coalesce(p.changed, false) AS changed_by_judge,
    f.modalities_agree,
    f.modalities AS fused_modalities,
    u.transcript,
    u.transcript_source,
    u.duration_s,
    u.audio_path,
    u.audio_sha256,
    a.model_key AS audio_model_key,
    t.model_key AS text_model_key,
    f.fusion_model_key,
    p.judgment_custom_id,
    p.judge_gate,
    p.judge_gate_reason,
    coalesce(ra.trained_on, 'sets:' || array_to_string(ra.train_eval_sets, ',')) AS audio_model_trained_on,
    coalesce(rt.trained_on, 'sets:' || array_to_string(rt.train_eval_sets, ',')) AS text_model_trained_on,
    u.language,
    u.language_probability,
    u.start_s,
    u.end_s
FROM utterances u
LEFT JOIN logits a
    ON a.eval_set = u.eval_set AND a.utterance_id = u.utterance_id AND a.modality = 'audio' AND a.task = 'categorical'
LEFT JOIN logits t
    ON t.eval_set = u.eval_set AND t.utterance_id = u.utterance_id AND t.modality = 'text' AND t.task = 'categorical'
LEFT JOIN fused_predictions f
    ON f.eval_set = u.eval_set AND f.utterance_id = u.utterance_id AND f.task = 'categorical'
LEFT JOIN predictions p
    ON p.eval_set = u.eval_set AND p.utterance_id = u.utterance_id
LEFT JOIN llm_judgments j
    ON j.custom_id = p.judgment_custom_id
LEFT JOIN model_registry ra
    ON ra.model_key = a.model_key
LEFT JOIN model_registry rt
    ON rt.model_key = t.model_key;

-- The latest overall metrics per evaluation set, stage and task (per-class rows stay in table metrics).
CREATE OR REPLACE VIEW v_metrics AS
SELECT eval_set, split, stage, task, metric, value, run_id, computed_at
FROM metrics
WHERE label IS NULL
QUALIFY computed_at = max(computed_at) OVER (PARTITION BY eval_set, split, stage, task);

-- The emotion timeline of every inbox episode: per speaker and time window, the seconds spoken and the dominant
-- emotion (largest share), with every share and the attribute means; the episode file and speaker count beside.
CREATE OR REPLACE VIEW v_episode_timeline AS
SELECT
    e.eval_set,
    e.episode_id,
    s.path AS episode_path,
    e.speaker_id,
    e.window_start_s,
    e.window_end_s,
    e.speech_s,
    ['angry', 'sad', 'happy', 'surprise', 'fear', 'disgust', 'contempt', 'neutral'][
        list_position(
            [e.share_angry, e.share_sad, e.share_happy, e.share_surprise,
        e.share_fear, e.share_disgust, e.share_contempt, e.share_neutral],
            greatest(e.share_angry, e.share_sad, e.share_happy, e.share_surprise,
        e.share_fear, e.share_disgust, e.share_contempt, e.share_neutral)
        )
    ] AS dominant_emotion,
    e.share_angry,
    e.share_sad,
    e.share_happy,
    e.share_surprise,
    e.share_fear,
    e.share_disgust,
    e.share_contempt,
    e.share_neutral,
    e.arousal,
    e.valence,
    e.dominance,
    e.fusion_model_key,
    e.run_id
FROM episode_emotions e
LEFT JOIN eval_sets s ON s.name = e.eval_set;

-- Every scored segment of every inbox episode, in time order: who spoke when, the final label and how sure the fused
-- model was of it (the fused probability of the final label; the judge's confidence where the judge changed it).
CREATE OR REPLACE VIEW v_episode_segments AS
SELECT
    u.eval_set AS episode_id,
    s.path AS episode_path,
    u.utterance_id AS segment_id,
    u.start_s,
    u.end_s,
    u.speaker_id AS speaker,
    coalesce(p.final_label, f.predicted_label) AS label,
    CASE
        WHEN coalesce(p.changed, false) THEN j.confidence
        ELSE f.probabilities[list_position(
            ['angry', 'sad', 'happy', 'surprise', 'fear', 'disgust', 'contempt', 'neutral'],
            coalesce(p.final_label, f.predicted_label))]
    END AS confidence,
    u.transcript
FROM utterances u
JOIN eval_sets s ON s.name = u.eval_set AND s.format = 'episode'
LEFT JOIN fused_predictions f
    ON f.eval_set = u.eval_set AND f.utterance_id = u.utterance_id AND f.task = 'categorical'
LEFT JOIN predictions p
    ON p.eval_set = u.eval_set AND p.utterance_id = u.utterance_id
LEFT JOIN llm_judgments j
    ON j.custom_id = p.judgment_custom_id
WHERE u.start_s IS NOT NULL;

-- What the judge cost, per evaluation set and run: the judgments each run asked (a judgment asked again on a later
-- run counts there, with its last call's tokens), answered ones, tokens and the estimated cost in USD at list price
-- (NULL when some judgment's model has no known price; 0 for the local judge).
CREATE OR REPLACE VIEW v_judge_spend AS
SELECT
    eval_set,
    run_id,
    backend,
    judge_model,
    count(*) AS calls,
    count(*) FILTER (answered) AS answered,
    coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(completion_tokens), 0) AS completion_tokens,
    CASE WHEN bool_and(estimated_cost_usd IS NOT NULL) THEN sum(estimated_cost_usd) END AS estimated_cost_usd,
    min(requested_at) AS first_request_at,
    max(completed_at) AS last_answer_at
FROM llm_judgments
GROUP BY eval_set, run_id, backend, judge_model;

-- The judge gate's evidence table per evaluation set: each kind of change with what it fixed and broke on
-- development, whether it is applied, and the net labels it gained.
CREATE OR REPLACE VIEW v_judge_gate_evidence AS
SELECT eval_set, gate_mode, kind, changes, fixed, broken, fixed - broken AS net_fixed, applied, judge_model,
       prompt_template_sha256, threshold, run_id
FROM judge_gate_evidence;
