-- Register one inbox episode as an evaluation set (format 'episode'); registering the same bytes again is a no-op.
INSERT INTO eval_sets (name, format, path, speakers_hint, min_speakers, max_speakers) VALUES (?, 'episode', ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING
