SELECT * FROM model_registry WHERE model_key = ?
