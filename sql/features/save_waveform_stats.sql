INSERT INTO waveform_stats (stats_key, eval_sets, mean, std, n_clips, n_samples, run_id)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
