-- Every registered fusion model of a task, newest first (models/selection.py picks the one fitted on a set's models).
SELECT * FROM model_registry WHERE kind = 'fusion' AND task = ? ORDER BY created_at DESC
