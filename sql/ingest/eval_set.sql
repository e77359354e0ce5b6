SELECT name, format, path, split_source, split_seed, speakers_hint, min_speakers, max_speakers, added_at FROM eval_sets WHERE name = ?
