-- Register one inbox episode as an evaluation set (format 'episode'); registering the same bytes again is a no-op.
MERGE INTO eval_sets AS t
USING (
    SELECT ?::VARCHAR AS name, ?::VARCHAR AS path, ?::INTEGER AS speakers_hint, ?::INTEGER AS min_speakers,
        ?::INTEGER AS max_speakers
) AS s
ON t.name = s.name
WHEN NOT MATCHED THEN INSERT (name, format, path, speakers_hint, min_speakers, max_speakers)
    VALUES (s.name, 'episode', s.path, s.speakers_hint, s.min_speakers, s.max_speakers)
