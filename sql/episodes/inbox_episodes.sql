-- Every inbox episode with its state: scored (predictions exist), missing (its file was gone when a run came to
-- ingest it; skipped until it is back), rejected (ingest refused it, no segments) or pending (registered, not yet
-- scored), with its segment and speaker counts.
SELECT
    e.name,
    CASE
        WHEN p.n > 0 THEN 'scored'
        WHEN m.reason IS NOT NULL THEN 'missing'
        WHEN r.reason IS NOT NULL AND coalesce(u.n, 0) = 0 THEN 'rejected'
        ELSE 'pending'
    END AS state,
    coalesce(u.n, 0) AS segments,
    coalesce(s.n, 0) AS speakers,
    e.speakers_hint,
    e.min_speakers,
    e.max_speakers,
    e.path,
    coalesce(m.reason, r.reason) AS reason,
    e.added_at
FROM eval_sets e
LEFT JOIN (SELECT eval_set, count(*) AS n FROM utterances GROUP BY eval_set) u ON u.eval_set = e.name
LEFT JOIN (SELECT eval_set, count(*) AS n FROM speakers GROUP BY eval_set) s ON s.eval_set = e.name
LEFT JOIN (SELECT eval_set, count(*) AS n FROM predictions GROUP BY eval_set) p ON p.eval_set = e.name
LEFT JOIN (
    SELECT eval_set, min(reason) AS reason FROM rejected_inputs WHERE stage = 'ingest' GROUP BY eval_set
) r ON r.eval_set = e.name
LEFT JOIN (
    SELECT eval_set, min(reason) AS reason FROM rejected_inputs WHERE stage = 'missing' GROUP BY eval_set
) m ON m.eval_set = e.name
WHERE e.format = 'episode'
ORDER BY e.added_at, e.name
