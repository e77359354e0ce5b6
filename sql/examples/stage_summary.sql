-- F1-macro and accuracy per stage, side by side, for each evaluation set and split.
PIVOT (SELECT eval_set, split, stage, metric, round(value, 3) AS value FROM v_metrics
       WHERE task = 'categorical' AND metric IN ('f1_macro', 'accuracy'))
ON stage USING first(value)
ORDER BY eval_set, split, metric;
