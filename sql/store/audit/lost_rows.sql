-- Rows lost by one set's run: clips of its corpus (the registered table _emojudge_expected, utterance_id) that are
-- neither an utterance nor a rejection, plus utterances without a final prediction.
SELECT
    (SELECT count(*) FROM _emojudge_expected x
     WHERE x.utterance_id NOT IN (SELECT utterance_id FROM utterances WHERE eval_set = $1)
       AND x.utterance_id NOT IN (SELECT utterance_id FROM rejected_inputs WHERE eval_set = $1 AND utterance_id IS NOT NULL))
    + (SELECT count(*) FROM utterances u WHERE u.eval_set = $1
       AND u.utterance_id NOT IN (SELECT utterance_id FROM predictions WHERE eval_set = $1))
