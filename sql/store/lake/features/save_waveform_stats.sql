MERGE INTO waveform_stats AS t
USING (SELECT ?::VARCHAR AS stats_key, ?::VARCHAR AS eval_sets, ?::DOUBLE AS mean, ?::DOUBLE AS std,
              ?::INTEGER AS n_clips, ?::BIGINT AS n_samples, ?::VARCHAR AS run_id) AS s
ON t.stats_key = s.stats_key
WHEN NOT MATCHED THEN INSERT (stats_key, eval_sets, mean, std, n_clips, n_samples, run_id)
    VALUES (s.stats_key, s.eval_sets, s.mean, s.std, s.n_clips, s.n_samples, s.run_id)
