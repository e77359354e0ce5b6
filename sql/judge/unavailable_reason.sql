-- Why the judge could not be reached in one evaluation set's latest refinement (NULL when it could).
SELECT any_value(judge_gate_reason) FROM predictions WHERE eval_set = ? AND judge_gate = 'judge-unavailable'
