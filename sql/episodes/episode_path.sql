-- The file a registered episode points at.
SELECT path FROM eval_sets WHERE name = ?
