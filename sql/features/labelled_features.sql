-- Labelled utterances of the given evaluation sets and split that have features under an encoder key.
SELECT u.eval_set, u.utterance_id, u.emotion, u.arousal, u.valence, u.dominance, u.transcript, i.n_frames
FROM utterances u
JOIN feature_index i ON i.eval_set = u.eval_set AND i.utterance_id = u.utterance_id AND i.encoder_key = ?
WHERE list_contains(?, u.eval_set) AND u.split = ?
ORDER BY u.eval_set, u.utterance_id
