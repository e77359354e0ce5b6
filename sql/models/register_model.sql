INSERT OR REPLACE INTO model_registry (model_key, kind, task, encoder_key, input_model_keys, train_eval_sets,
    hyperparameters, dev_metric_name, dev_metric, path, git_revision, run_id, trained_on)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
