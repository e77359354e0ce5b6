-- F1-macro and accuracy per stage, side by side, for each evaluation set.
PIVOT (SELECT eval_set, stage, metric, round(value, 3) AS value FROM v_metrics
       WHERE task = 'categorical' AND metric IN ('f1_macro', 'accuracy'))
ON stage USING first(value)
ORDER BY eval_set, metric;
