-- New utterance vectors from the registered Arrow table _emojudge_new_vectors (content_sha256, vector).
INSERT INTO utterance_vectors (encoder_key, content_sha256, modality, vector)
SELECT ?, content_sha256, ?, vector FROM _emojudge_new_vectors ON CONFLICT DO NOTHING
