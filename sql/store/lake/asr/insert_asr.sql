MERGE INTO asr_transcripts AS t
USING (SELECT ?::VARCHAR AS asr_model_key, ?::VARCHAR AS audio_sha256, ?::VARCHAR AS transcript, ?::VARCHAR AS language) AS s
ON t.asr_model_key = s.asr_model_key AND t.audio_sha256 = s.audio_sha256
WHEN NOT MATCHED THEN INSERT (asr_model_key, audio_sha256, transcript, language)
    VALUES (s.asr_model_key, s.audio_sha256, s.transcript, s.language)
