-- Every labelled utterance of one evaluation set with each stage's prediction, for the evaluation asset.
SELECT u.utterance_id, u.split, u.emotion, u.arousal, u.valence, u.dominance,
       ac.predicted_label AS audio_label, tc.predicted_label AS text_label, fc.predicted_label AS fused_label,
       p.final_label AS refined_label, p.changed AS judge_changed,
       aa.predicted_attributes AS audio_attributes, ta.predicted_attributes AS text_attributes,
       fa.predicted_attributes AS fused_attributes
FROM utterances u
LEFT JOIN logits ac ON ac.eval_set = u.eval_set AND ac.utterance_id = u.utterance_id
    AND ac.modality = 'audio' AND ac.task = 'categorical'
LEFT JOIN logits tc ON tc.eval_set = u.eval_set AND tc.utterance_id = u.utterance_id
    AND tc.modality = 'text' AND tc.task = 'categorical'
LEFT JOIN fused_predictions fc ON fc.eval_set = u.eval_set AND fc.utterance_id = u.utterance_id
    AND fc.task = 'categorical'
LEFT JOIN predictions p ON p.eval_set = u.eval_set AND p.utterance_id = u.utterance_id
LEFT JOIN logits aa ON aa.eval_set = u.eval_set AND aa.utterance_id = u.utterance_id
    AND aa.modality = 'audio' AND aa.task = 'attributes'
LEFT JOIN logits ta ON ta.eval_set = u.eval_set AND ta.utterance_id = u.utterance_id
    AND ta.modality = 'text' AND ta.task = 'attributes'
LEFT JOIN fused_predictions fa ON fa.eval_set = u.eval_set AND fa.utterance_id = u.utterance_id
    AND fa.task = 'attributes'
WHERE u.eval_set = ? AND (u.emotion IS NOT NULL OR u.arousal IS NOT NULL)
ORDER BY u.utterance_id
