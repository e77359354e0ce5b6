-- Stored judgments that got an answer, by custom_id: reused instead of asking (and paying) again.
SELECT * FROM llm_judgments WHERE list_contains(?, custom_id) AND answered
