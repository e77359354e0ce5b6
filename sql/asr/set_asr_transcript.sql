UPDATE utterances SET transcript = ?, transcript_source = ? WHERE eval_set = ? AND utterance_id = ?
