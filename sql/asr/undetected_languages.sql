-- Utterances of one evaluation set with no stated or detected language yet (asr/language_id.py detects theirs).
SELECT utterance_id, audio_path, audio_sha256, episode_sha256, start_s, end_s, channel FROM utterances
WHERE eval_set = ? AND language IS NULL
ORDER BY utterance_id
