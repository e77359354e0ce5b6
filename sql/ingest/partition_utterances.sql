SELECT * FROM utterances WHERE eval_set = ? ORDER BY utterance_id
