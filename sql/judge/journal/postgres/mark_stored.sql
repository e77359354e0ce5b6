-- The warehouse now holds these answers (a JSON array of custom_ids).
UPDATE judge_answers SET stored = 1 WHERE custom_id IN (SELECT value FROM json_array_elements_text(%s::json))
