INSERT INTO eval_sets (name, format, path) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET format = excluded.format, path = excluded.path
