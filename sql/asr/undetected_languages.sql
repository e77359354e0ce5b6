-- Utterances of one evaluation set with no stated or detected language yet (asr/language_id.py detects theirs): an
-- episode's segments are detected per speaker, in time order; other clips one by one.
SELECT utterance_id, audio_path, audio_sha256, episode_sha256, start_s, end_s, channel, speaker_id FROM utterances
WHERE eval_set = ? AND language IS NULL
ORDER BY episode_sha256 NULLS LAST, speaker_id, start_s, utterance_id
