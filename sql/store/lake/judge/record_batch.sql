MERGE INTO judge_batches AS t
USING (SELECT ?::VARCHAR AS batch_id, ?::VARCHAR AS eval_set, ?::VARCHAR AS judge_key, ?::VARCHAR AS input_file_id,
              ?::VARCHAR[] AS custom_ids, ?::INTEGER AS attempt, ?::VARCHAR AS run_id) AS s
ON t.batch_id = s.batch_id
WHEN MATCHED THEN UPDATE SET eval_set = s.eval_set, judge_key = s.judge_key, input_file_id = s.input_file_id,
    custom_ids = s.custom_ids, status = 'validating', output_file_id = NULL, error_file_id = NULL,
    attempt = s.attempt, run_id = s.run_id, created_at = current_timestamp, updated_at = current_timestamp,
    collected_at = NULL
WHEN NOT MATCHED THEN INSERT (batch_id, eval_set, judge_key, input_file_id, custom_ids, status, attempt, run_id)
    VALUES (s.batch_id, s.eval_set, s.judge_key, s.input_file_id, s.custom_ids, 'validating', s.attempt, s.run_id)
