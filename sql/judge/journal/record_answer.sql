-- Keep one paid answer (its llm_judgments row) before anything else is asked.
INSERT INTO judge_answers (custom_id, eval_set, final, row_json, stored, recorded_at) VALUES (?, ?, ?, ?, 0, ?)
ON CONFLICT (custom_id) DO UPDATE SET eval_set = excluded.eval_set, final = excluded.final,
    row_json = excluded.row_json, stored = 0, recorded_at = excluded.recorded_at
