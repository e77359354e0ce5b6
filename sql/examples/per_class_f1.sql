-- Per-class F1 by stage on the latest evaluation of each set, worst classes first.
SELECT eval_set, split, stage, label AS emotion, round(value, 3) AS f1,
       (SELECT s.value FROM metrics s
        WHERE s.eval_set = m.eval_set AND s.stage = m.stage AND s.task = m.task
          AND s.split = m.split AND s.metric = 'support' AND s.label = m.label AND s.run_id = m.run_id) AS support
FROM metrics m
WHERE task = 'categorical' AND metric = 'f1' AND label IS NOT NULL AND split IN ('test', 'all')
ORDER BY eval_set, split, stage, f1;
