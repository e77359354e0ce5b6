-- Where the frames of a split's utterances are stored: one row per item of the registered Arrow table _emojudge_items
-- (eval_set, utterance_id, item) that has audio frames under an encoder key, unordered (the reader puts rows in
-- item order: no sort is materialised here).
SELECT s.item, i.content_sha256, i.file, i."row", i.n_frames, i.dim
FROM _emojudge_items s
JOIN feature_index i
  ON i.eval_set = s.eval_set AND i.utterance_id = s.utterance_id AND i.encoder_key = ? AND i.modality = 'audio'
