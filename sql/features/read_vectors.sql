-- Utterance vectors of an evaluation set under an encoder key (all utterances, or those in the list given twice).
SELECT i.utterance_id, v.vector FROM feature_index i
JOIN utterance_vectors v ON v.encoder_key = i.encoder_key AND v.content_sha256 = i.content_sha256
WHERE i.eval_set = ? AND i.encoder_key = ?
  AND (CAST(? AS VARCHAR[]) IS NULL OR list_contains(CAST(? AS VARCHAR[]), i.utterance_id))
ORDER BY i.utterance_id
