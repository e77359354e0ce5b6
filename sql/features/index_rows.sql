-- Where an evaluation set's frames are stored (all utterances, or those in the list given twice).
SELECT utterance_id, content_sha256, file, "row", n_frames, dim FROM feature_index
WHERE eval_set = ? AND encoder_key = ? AND modality = ?
  AND (CAST(? AS VARCHAR[]) IS NULL OR list_contains(CAST(? AS VARCHAR[]), utterance_id))
ORDER BY file, "row", utterance_id
