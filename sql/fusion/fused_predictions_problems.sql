-- Malformed rows of one partition of fused_predictions: each column counts one kind of problem. An utterance with
-- logits of either modality must have a prediction; one with none (every input rejected) is in rejected_inputs.
-- Parameters: probability tolerance, eval_set, eval_set.
WITH cat AS (
    SELECT * FROM fused_predictions WHERE eval_set = $2 AND task = 'categorical'
)
SELECT
    (SELECT count(*) FROM cat WHERE abs(list_sum(probabilities) - 1) > $1) AS probabilities_not_summing_to_1,
    (SELECT count(*) FROM cat WHERE predicted_label NOT IN
        ('angry', 'sad', 'happy', 'surprise', 'fear', 'disgust', 'contempt', 'neutral')
        OR predicted_label IS NULL) AS labels_outside_8_classes,
    (SELECT count(*) FROM cat WHERE len(list_filter(probabilities, lambda p: isnan(p) OR p IS NULL)) > 0)
        + (SELECT count(*) FROM fused_predictions WHERE eval_set = $2 AND task = 'attributes'
           AND len(list_filter(predicted_attributes, lambda v: isnan(v) OR v IS NULL)) > 0) AS rows_with_nan,
    (SELECT count(*) FROM utterances u WHERE u.eval_set = $3
        AND EXISTS (SELECT 1 FROM logits l WHERE l.eval_set = u.eval_set AND l.utterance_id = u.utterance_id
                    AND l.task = 'categorical')
        AND NOT EXISTS (SELECT 1 FROM cat WHERE cat.utterance_id = u.utterance_id)) AS utterances_without_prediction
