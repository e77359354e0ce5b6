-- Utterances of the given evaluation sets with features under an encoder key, with their speakers (for
-- per-speaker feature normalisation); unordered.
SELECT u.eval_set, u.utterance_id, u.speaker_id, i.n_frames
FROM utterances u
JOIN feature_index i ON i.eval_set = u.eval_set AND i.utterance_id = u.utterance_id AND i.encoder_key = ?
WHERE list_contains(?, u.eval_set)
