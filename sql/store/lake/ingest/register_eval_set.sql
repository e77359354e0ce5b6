MERGE INTO eval_sets AS t
USING (SELECT ?::VARCHAR AS name, ?::VARCHAR AS format, ?::VARCHAR AS path) AS s
ON t.name = s.name
WHEN MATCHED THEN UPDATE SET format = s.format, path = s.path
WHEN NOT MATCHED THEN INSERT (name, format, path) VALUES (s.name, s.format, s.path)
