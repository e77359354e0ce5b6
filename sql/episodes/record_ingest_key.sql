-- Record what an episode's segments and speakers were made with (NULL after a rejection, so it is tried again).
UPDATE eval_sets SET ingest_key = ? WHERE name = ?
