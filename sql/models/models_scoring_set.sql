-- The models whose outputs a set's logits and fused predictions hold, with what each was trained on (NULL for
-- fused rows no fusion model scored: fusion_model_key 'none').
SELECT l.modality, l.task, l.model_key,
       coalesce(r.trained_on, 'sets:' || array_to_string(r.train_eval_sets, ',')) AS trained_on, r.path
FROM (SELECT DISTINCT modality, task, model_key FROM logits WHERE eval_set = ?) l
LEFT JOIN model_registry r ON r.model_key = l.model_key
UNION ALL
SELECT f.modality, f.task, f.model_key,
       coalesce(r.trained_on, 'sets:' || array_to_string(r.train_eval_sets, ',')) AS trained_on, r.path
FROM (SELECT DISTINCT 'fused' AS modality, task, fusion_model_key AS model_key FROM fused_predictions
      WHERE eval_set = ?) f
LEFT JOIN model_registry r ON r.model_key = f.model_key
ORDER BY 1, 2
