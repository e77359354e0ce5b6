-- Speakers with the most wrong final labels (labelled utterances only).
SELECT eval_set, speaker_id, count(*) AS utterances,
       count(*) FILTER (WHERE final_label <> true_label) AS errors,
       round(avg(CASE WHEN final_label = true_label THEN 1.0 ELSE 0.0 END), 3) AS accuracy
FROM v_predictions
WHERE true_label IS NOT NULL AND final_label IS NOT NULL
GROUP BY eval_set, speaker_id
ORDER BY errors DESC, accuracy
LIMIT 20;
