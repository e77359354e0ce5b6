-- What the last accepted ingest of one episode left: the key it was made with (eval_sets.ingest_key), the episode
-- hash of its segments, and how many segments and speakers it wrote.
SELECT
    e.ingest_key,
    (SELECT any_value(u.episode_sha256) FROM utterances u WHERE u.eval_set = e.name) AS episode_sha256,
    (SELECT count(*) FROM utterances u WHERE u.eval_set = e.name) AS segments,
    (SELECT count(*) FROM speakers s WHERE s.eval_set = e.name) AS speakers
FROM eval_sets e
WHERE e.name = ?
