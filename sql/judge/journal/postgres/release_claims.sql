-- Give up an owner's claims on some prompts (a JSON array of custom_ids).
DELETE FROM judge_claims WHERE owner = %s AND custom_id IN (SELECT value FROM json_array_elements_text(%s::json))
