INSERT OR REPLACE INTO judge_batches (batch_id, eval_set, judge_key, input_file_id, custom_ids, status, attempt, run_id)
VALUES (?, ?, ?, ?, ?, 'validating', ?, ?)
