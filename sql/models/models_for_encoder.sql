-- Every registered model of a kind and task for one encoder key, newest first (models/selection.py picks one).
SELECT * FROM model_registry
WHERE kind = ? AND task = ? AND encoder_key = ?
ORDER BY created_at DESC
