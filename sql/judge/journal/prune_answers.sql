-- Forget answers the warehouse has held for longer than a bound (unix seconds).
DELETE FROM judge_answers WHERE stored = 1 AND recorded_at < ?
