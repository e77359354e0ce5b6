-- Forget claims that expired before a bound (unix seconds).
DELETE FROM judge_claims WHERE expires_at < ?
