-- A shipped model's registry row, written the first time it scores a set; later uses only update where it is
-- installed and the encoder key it was last used with (created_at stays: it is not a newer model).
INSERT INTO model_registry (model_key, kind, task, encoder_key, input_model_keys, train_eval_sets,
    hyperparameters, dev_metric_name, dev_metric, path, git_revision, run_id, trained_on)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (model_key) DO UPDATE SET path = excluded.path, encoder_key = excluded.encoder_key
