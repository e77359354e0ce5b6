SELECT eval_set, count(*) AS utterances, count(DISTINCT speaker_id) AS speakers,
       round(sum(duration_s) / 60, 1) AS minutes,
       (SELECT count(*) FROM rejected_inputs r WHERE r.eval_set = u.eval_set) AS rejected
FROM utterances u GROUP BY eval_set ORDER BY eval_set
