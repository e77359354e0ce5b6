-- Stored prosody values of the train split of the given evaluation sets (for corpus-relative thresholds).
SELECT p.* EXCLUDE (eval_set, utterance_id, audio_sha256, prosody_version, description, run_id)
FROM prosody p
JOIN utterances u ON u.eval_set = p.eval_set AND u.utterance_id = p.utterance_id
WHERE list_contains(?, p.eval_set) AND u.split = 'train' AND p.eval_set <> ?
