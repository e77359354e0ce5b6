-- Take (or renew) the claim on one prompt.
INSERT INTO judge_claims (custom_id, owner, host, pid, expires_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (custom_id) DO UPDATE SET owner = excluded.owner, host = excluded.host, pid = excluded.pid,
    expires_at = excluded.expires_at
