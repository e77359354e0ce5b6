UPDATE eval_sets SET split_source = ?, split_seed = ? WHERE name = ?
