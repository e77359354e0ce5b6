MERGE INTO model_registry AS t
USING (SELECT ?::VARCHAR AS model_key, ?::VARCHAR AS kind, ?::VARCHAR AS task, ?::VARCHAR AS encoder_key,
              ?::VARCHAR[] AS input_model_keys, ?::VARCHAR[] AS train_eval_sets, ?::VARCHAR AS hyperparameters,
              ?::VARCHAR AS dev_metric_name, ?::DOUBLE AS dev_metric, ?::VARCHAR AS path, ?::VARCHAR AS git_revision,
              ?::VARCHAR AS run_id, ?::VARCHAR AS trained_on) AS s
ON t.model_key = s.model_key
WHEN MATCHED THEN UPDATE SET kind = s.kind, task = s.task, encoder_key = s.encoder_key,
    input_model_keys = s.input_model_keys, train_eval_sets = s.train_eval_sets, hyperparameters = s.hyperparameters,
    dev_metric_name = s.dev_metric_name, dev_metric = s.dev_metric, path = s.path, git_revision = s.git_revision,
    run_id = s.run_id, trained_on = s.trained_on, created_at = current_timestamp
WHEN NOT MATCHED THEN INSERT (model_key, kind, task, encoder_key, input_model_keys, train_eval_sets, hyperparameters,
    dev_metric_name, dev_metric, path, git_revision, run_id, trained_on)
    VALUES (s.model_key, s.kind, s.task, s.encoder_key, s.input_model_keys, s.train_eval_sets, s.hyperparameters,
    s.dev_metric_name, s.dev_metric, s.path, s.git_revision, s.run_id, s.trained_on)
