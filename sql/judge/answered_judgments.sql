-- Stored judgments that are final, by custom_id: answered (a valid judgment), or left as an error after the bound on
-- invalid responses. They are reused instead of asking (and paying) again.
SELECT * FROM llm_judgments WHERE list_contains(?, custom_id) AND (answered OR attempts >= ?)
