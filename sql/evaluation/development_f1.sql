-- Development-split F1-macro per stage for one evaluation set (from the latest evaluation).
SELECT stage, value FROM v_metrics
WHERE eval_set = ? AND split = 'development' AND task = 'categorical' AND metric = 'f1_macro'
