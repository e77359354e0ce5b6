-- Which of the hashes in the registered Arrow table _emojudge_wanted have a vector under an encoder key.
SELECT v.content_sha256 FROM utterance_vectors v
JOIN _emojudge_wanted w USING (content_sha256) WHERE v.encoder_key = ?
