UPDATE judge_batches SET collected_at = current_timestamp, updated_at = current_timestamp WHERE batch_id = ?
