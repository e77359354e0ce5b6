-- Each registered evaluation set's corpus path (models/selection.py tells the generated demo corpus by it).
SELECT name, path FROM eval_sets ORDER BY name
