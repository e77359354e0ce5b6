SELECT name, format, path, split_source, split_seed, added_at FROM eval_sets WHERE name = ?
