-- The current claims on some prompts (a JSON array of custom_ids).
SELECT custom_id, owner, host, pid, expires_at FROM judge_claims
WHERE custom_id IN (SELECT value FROM json_array_elements_text(%s::json))
