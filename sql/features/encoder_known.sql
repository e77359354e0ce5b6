SELECT 1 FROM encoders WHERE encoder_key = ?
