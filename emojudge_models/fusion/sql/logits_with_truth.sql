-- Audio and text logits side by side with the truth, for the given evaluation sets, splits and task.
SELECT u.eval_set, u.utterance_id, u.split, u.emotion, u.arousal, u.valence, u.dominance,
       a.logits AS audio_logits, a.predicted_label AS audio_label, a.model_key AS audio_model_key,
       t.logits AS text_logits, t.predicted_label AS text_label, t.model_key AS text_model_key
FROM utterances u
JOIN logits a ON a.eval_set = u.eval_set AND a.utterance_id = u.utterance_id AND a.modality = 'audio' AND a.task = ?
JOIN logits t ON t.eval_set = u.eval_set AND t.utterance_id = u.utterance_id AND t.modality = 'text' AND t.task = ?
WHERE list_contains(?, u.eval_set) AND (CAST(? AS VARCHAR[]) IS NULL OR list_contains(?, u.split))
ORDER BY u.eval_set, u.utterance_id
