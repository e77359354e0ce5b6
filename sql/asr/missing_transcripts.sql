-- Utterances of one evaluation set that still need a transcript (none in the corpus, or a previous ASR one).
SELECT utterance_id, audio_path, audio_sha256, duration_s, episode_sha256, start_s, end_s, channel, language,
       language_probability, transcript_source
FROM utterances
WHERE eval_set = ? AND (transcript IS NULL OR transcript_source LIKE 'asr:%')
ORDER BY duration_s, utterance_id
