SELECT name, format, path, split_source, split_seed, speakers_hint, added_at FROM eval_sets WHERE name = ?
