-- Every utterance vector of an evaluation set under an encoder key, unordered, for reading in record batches.
SELECT i.utterance_id, v.vector FROM feature_index i
JOIN utterance_vectors v ON v.encoder_key = i.encoder_key AND v.content_sha256 = i.content_sha256
WHERE i.eval_set = ? AND i.encoder_key = ?
