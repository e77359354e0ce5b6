-- What was rejected, where and why: every reason a person can act on.
SELECT eval_set, stage, reason, count(*) AS n, min(audio_path) AS example_path
FROM rejected_inputs
GROUP BY eval_set, stage, reason
ORDER BY eval_set, n DESC;
