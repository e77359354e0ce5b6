-- The utterance vector of each item of the registered Arrow table _emojudge_items (eval_set, utterance_id, item)
-- under an encoder key, unordered, for reading in record batches.
SELECT s.item, v.vector
FROM _emojudge_items s
JOIN feature_index i ON i.eval_set = s.eval_set AND i.utterance_id = s.utterance_id AND i.encoder_key = ?
JOIN utterance_vectors v ON v.encoder_key = i.encoder_key AND v.content_sha256 = i.content_sha256
