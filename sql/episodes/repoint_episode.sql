-- Point a registered episode at another copy of its bytes (its file was moved or deleted, the same bytes added again).
UPDATE eval_sets SET path = ? WHERE name = ? AND format = 'episode'
