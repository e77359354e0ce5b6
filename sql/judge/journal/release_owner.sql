-- Give up every claim an owner holds.
DELETE FROM judge_claims WHERE owner = ?
