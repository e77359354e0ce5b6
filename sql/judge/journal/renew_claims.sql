-- Extend every claim an owner holds.
UPDATE judge_claims SET expires_at = ? WHERE owner = ?
