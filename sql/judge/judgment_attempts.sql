-- The 200 responses each stored judgment has had so far, by custom_id (a judgment asked again adds to them).
SELECT custom_id, attempts FROM llm_judgments WHERE list_contains(?, custom_id)
