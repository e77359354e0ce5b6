-- The encoder key of the latest feature extraction of one modality for one evaluation set.
SELECT encoder_key FROM feature_index WHERE eval_set = ? AND modality = ?
GROUP BY encoder_key ORDER BY max(created_at) DESC LIMIT 1
