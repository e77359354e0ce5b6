-- Every labelled set's latest categorical F1-macro per stage on its headline split (test where it has one, else all
-- labelled rows), at most ? sets: the evaluation asset shows them whichever partition was materialised last.
WITH headline AS (
    SELECT eval_set, CASE WHEN bool_or(split = 'test') THEN 'test' ELSE 'all' END AS split
    FROM metrics
    GROUP BY eval_set
)
SELECT m.eval_set, h.split, m.stage, m.value AS f1_macro
FROM metrics m
JOIN headline h ON h.eval_set = m.eval_set AND h.split = m.split
WHERE m.task = 'categorical' AND m.metric = 'f1_macro' AND m.label IS NULL
  AND m.eval_set IN (SELECT eval_set FROM headline ORDER BY eval_set LIMIT ?)
ORDER BY m.eval_set, m.stage
