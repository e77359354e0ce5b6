INSERT INTO asr_transcripts (asr_model_key, audio_sha256, transcript, language) VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING
