-- Give up an owner's claims on some prompts (a JSON array of custom_ids).
DELETE FROM judge_claims WHERE owner = ? AND custom_id IN (SELECT value FROM json_each(?))
