-- How many models are registered (of any kind, task and encoder): zero means nothing was trained yet.
SELECT count(*) FROM model_registry
