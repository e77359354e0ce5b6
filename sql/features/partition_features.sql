-- Utterances of one evaluation set with features under an encoder key, with their frame counts, in storage order
-- (shard, row): scoring reads them in chunks, and each chunk then decodes only its own shard row groups.
SELECT u.eval_set, u.utterance_id, u.transcript, i.n_frames
FROM utterances u
JOIN feature_index i ON i.eval_set = u.eval_set AND i.utterance_id = u.utterance_id AND i.encoder_key = ?
WHERE u.eval_set = ?
ORDER BY i.file, i."row", u.utterance_id
