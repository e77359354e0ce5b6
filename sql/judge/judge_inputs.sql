-- What the judge reads for each fused categorical prediction of one evaluation set.
SELECT f.utterance_id, u.split, u.emotion, u.transcript, u.speaker_id, u.gender, p.description AS prosody_description,
       p.prosody_version, f.predicted_label AS fused_label, list_max(f.probabilities) AS fused_probability,
       f.audio_label, f.text_label, f.fusion_model_key
FROM fused_predictions f
JOIN utterances u ON u.eval_set = f.eval_set AND u.utterance_id = f.utterance_id
LEFT JOIN prosody p ON p.eval_set = f.eval_set AND p.utterance_id = f.utterance_id
WHERE f.eval_set = ? AND f.task = 'categorical'
ORDER BY f.utterance_id
