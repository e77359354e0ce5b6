-- A few held-out utterances with their transcript (and where it came from) next to each stage's label.
SELECT utterance_id, split, transcript, transcript_source, true_label, audio_label, text_label, fused_label,
       final_label
FROM v_predictions
WHERE eval_set = ? AND split IN ('test', 'development')
ORDER BY split DESC, utterance_id
LIMIT 8
