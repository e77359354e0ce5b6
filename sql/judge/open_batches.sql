SELECT batch_id, input_file_id, custom_ids, attempt, status, output_file_id, error_file_id
FROM judge_batches WHERE eval_set = ? AND judge_key = ? AND collected_at IS NULL
ORDER BY created_at
