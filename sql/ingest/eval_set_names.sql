SELECT name FROM eval_sets ORDER BY name
