SELECT e.name, e.format, e.path, e.split_source, e.added_at,
       (SELECT count(*) FROM utterances u WHERE u.eval_set = e.name) AS utterances,
       (SELECT count(*) FROM rejected_inputs r WHERE r.eval_set = e.name) AS rejected
FROM eval_sets e ORDER BY e.added_at, e.name
