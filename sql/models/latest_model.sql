-- The newest registered model of a kind and task (optionally for one encoder key).
SELECT * FROM model_registry
WHERE kind = ? AND task = ? AND (CAST(? AS VARCHAR) IS NULL OR encoder_key = ?)
ORDER BY created_at DESC
LIMIT 1
