DELETE FROM llm_judgments WHERE list_contains(?, custom_id)
