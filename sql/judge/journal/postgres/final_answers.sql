-- Final answers the journal holds for some prompts (a JSON array of custom_ids).
SELECT custom_id, row_json FROM judge_answers
WHERE final = 1 AND custom_id IN (SELECT value FROM json_array_elements_text(%s::json))
