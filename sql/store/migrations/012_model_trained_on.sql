-- v11 -> v12: model_registry.trained_on says what a model was trained on: shipped:<corpus> for the real-speech models
-- shipped inside the package (emojudge_models/models/shipped/), synthetic:<sets> for models trained on the generated
-- demo corpus, sets:<sets> for models trained on the user's sets. Rows written before keep NULL (their
-- train_eval_sets say it; emojudge_models/models/selection.py tells a synthetic one by its set's corpus).
ALTER TABLE IF EXISTS model_registry ADD COLUMN IF NOT EXISTS trained_on VARCHAR;
