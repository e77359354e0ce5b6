SELECT stats_key FROM waveform_stats ORDER BY created_at DESC LIMIT 1
