-- Audio and text logits side by side with the truth, for the given evaluation sets, splits and task. An utterance
-- with only one modality's logits (no transcript, an encoder failure) comes with the other one NULL.
SELECT u.eval_set, u.utterance_id, u.split, u.emotion, u.arousal, u.valence, u.dominance,
       a.logits AS audio_logits, a.predicted_label AS audio_label, a.model_key AS audio_model_key,
       a.probabilities AS audio_probabilities, a.predicted_attributes AS audio_attributes,
       t.logits AS text_logits, t.predicted_label AS text_label, t.model_key AS text_model_key,
       t.probabilities AS text_probabilities, t.predicted_attributes AS text_attributes
FROM utterances u
LEFT JOIN logits a
    ON a.eval_set = u.eval_set AND a.utterance_id = u.utterance_id AND a.modality = 'audio' AND a.task = ?
LEFT JOIN logits t
    ON t.eval_set = u.eval_set AND t.utterance_id = u.utterance_id AND t.modality = 'text' AND t.task = ?
WHERE list_contains(?, u.eval_set) AND (CAST(? AS VARCHAR[]) IS NULL OR list_contains(?, u.split))
    AND (a.logits IS NOT NULL OR t.logits IS NOT NULL)
ORDER BY u.eval_set, u.utterance_id
