SELECT audio_sha256, transcript FROM asr_transcripts WHERE asr_model_key = ? AND list_contains(?, audio_sha256)
