"""The Celery app the cluster's workers run: ``celery -A emojudge_pipeline.cluster.celery_app worker``.

The same broker, backend and delivery settings as the executor that submits the steps (``executor.celery_config``),
read from the worker's own settings; each task executes one Dagster step in the worker's process.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from emojudge_models.settings import Settings
from emojudge_pipeline.cluster.executor import celery_config

app = make_app(celery_config(Settings.from_env()))
execute_plan = create_task(app)
