-- The newest registered model key per kind and task (what a rescoring run would score with).
SELECT kind, task, arg_max(model_key, created_at) AS model_key FROM model_registry GROUP BY kind, task ORDER BY kind, task
