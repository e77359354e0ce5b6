-- The newest registered model key per kind and task (what a rescoring run would score with; models trained on the
-- synthetic demo corpus score no episode unless EMOJUDGE_USE_DEMO_MODELS=1).
SELECT kind, task, arg_max(model_key, created_at) AS model_key FROM model_registry
WHERE coalesce(trained_on, '') NOT LIKE 'synthetic:%'
GROUP BY kind, task ORDER BY kind, task
