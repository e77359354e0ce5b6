-- New utterance vectors from the registered Arrow table _emojudge_new_vectors (content_sha256, vector).
MERGE INTO utterance_vectors AS t
USING (SELECT DISTINCT ON (content_sha256) ?::VARCHAR AS encoder_key, content_sha256, ?::VARCHAR AS modality, vector
       FROM _emojudge_new_vectors) AS s
ON t.encoder_key = s.encoder_key AND t.content_sha256 = s.content_sha256
WHEN NOT MATCHED THEN INSERT (encoder_key, content_sha256, modality, vector)
    VALUES (s.encoder_key, s.content_sha256, s.modality, s.vector)
