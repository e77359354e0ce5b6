-- Inbox episodes scored by a model older than the newest registered one of the same kind and task: an audio, text
-- or fusion model key in their logits or fused predictions that is not the latest. Old rows stay queryable until
-- the rescoring run replaces the partition. Models trained on the synthetic demo corpus never score an episode
-- unless EMOJUDGE_USE_DEMO_MODELS=1 (emojudge_models/models/selection.py), so they never make one stale.
WITH latest AS (
    SELECT kind, task, arg_max(model_key, created_at) AS model_key FROM model_registry
    WHERE coalesce(trained_on, '') NOT LIKE 'synthetic:%' GROUP BY kind, task
),
used AS (
    SELECT DISTINCT eval_set, model_key FROM logits
    UNION
    SELECT DISTINCT eval_set, fusion_model_key AS model_key FROM fused_predictions
)
SELECT DISTINCT e.name
FROM eval_sets e
JOIN used ON used.eval_set = e.name
JOIN model_registry m ON m.model_key = used.model_key
JOIN latest l ON l.kind = m.kind AND l.task = m.task
WHERE e.format = 'episode' AND used.model_key <> l.model_key
ORDER BY e.name
