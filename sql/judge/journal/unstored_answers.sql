-- Answers of one evaluation set the warehouse does not hold yet (a run died between the answer and its write).
SELECT custom_id, row_json FROM judge_answers WHERE eval_set = ? AND stored = 0 ORDER BY recorded_at
