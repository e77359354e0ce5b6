UPDATE judge_batches SET status = ?, output_file_id = ?, error_file_id = ?, updated_at = current_timestamp
WHERE batch_id = ?
