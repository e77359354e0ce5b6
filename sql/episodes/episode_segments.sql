-- The scored segments of one inbox episode: who spoke when, the final label, and the fused attributes where an
-- attributes model exists (arousal, valence, dominance), with the categorical fusion model behind the label.
SELECT
    u.eval_set AS episode_id,
    u.speaker_id,
    u.start_s,
    u.end_s,
    p.final_label,
    a.predicted_attributes[1] AS arousal,
    a.predicted_attributes[2] AS valence,
    a.predicted_attributes[3] AS dominance,
    c.fusion_model_key
FROM utterances u
JOIN predictions p ON p.eval_set = u.eval_set AND p.utterance_id = u.utterance_id
LEFT JOIN fused_predictions c ON c.eval_set = u.eval_set AND c.utterance_id = u.utterance_id AND c.task = 'categorical'
LEFT JOIN fused_predictions a ON a.eval_set = u.eval_set AND a.utterance_id = u.utterance_id AND a.task = 'attributes'
WHERE u.eval_set = ? AND u.start_s IS NOT NULL
ORDER BY u.start_s, u.utterance_id
