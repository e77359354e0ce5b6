-- Register one inbox episode as an evaluation set (format 'episode'); registering the same bytes again is a no-op.
MERGE INTO eval_sets AS t
USING (SELECT ?::VARCHAR AS name, ?::VARCHAR AS path, ?::INTEGER AS speakers_hint) AS s
ON t.name = s.name
WHEN NOT MATCHED THEN INSERT (name, format, path, speakers_hint) VALUES (s.name, 'episode', s.path, s.speakers_hint)
