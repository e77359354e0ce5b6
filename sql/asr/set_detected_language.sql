UPDATE utterances SET language = ?, language_probability = ? WHERE eval_set = ? AND utterance_id = ?
