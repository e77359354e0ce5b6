-- Development-split F1-macro of the fused and refined stages for one evaluation set (latest evaluation).
SELECT stage, value FROM v_metrics
WHERE eval_set = ? AND split = 'development' AND task = 'categorical' AND metric = 'f1_macro'
  AND stage IN ('fused', 'refined')
