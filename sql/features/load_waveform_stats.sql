SELECT mean, std, n_clips, n_samples FROM waveform_stats WHERE stats_key = ?
