"""The cluster deployment: Dagster storage on PostgreSQL, the warehouse as DuckLake, steps on Celery workers.

``executor.py`` builds the executor and instance storage from the settings, ``celery_app.py`` is the workers' app,
``servers.py`` starts the servers a cluster needs on loopback (for the demo and the tests), ``demo.py`` is
``make cluster-demo``. docs/scale-out.md says why Celery and what the figures were.
"""
