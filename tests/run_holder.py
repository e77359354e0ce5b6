"""A real Dagster run that stays STARTED, run as its own process by tests/test_unattended.py.

``python run_holder.py tagged|untagged`` starts a run, prints ``holding <run id>`` and sleeps until it is killed: a
stand-in for a crashed ``emojudge materialize`` (tagged with its process, as the CLI tags its runs) or for a run
started by another Dagster tool (untagged).
"""

import sys
import time

import dagster as dg

from emojudge_pipeline.instance import instance, process_tags


@dg.asset
def runs_until_killed(context: dg.AssetExecutionContext) -> None:
    print(f"holding {context.run_id}", flush=True)
    while True:
        time.sleep(0.2)


def main() -> None:
    job = dg.Definitions(assets=[runs_until_killed]).resolve_implicit_global_asset_job_def()
    tags = process_tags() if sys.argv[1] == "tagged" else None
    job.execute_in_process(instance=instance(), tags=tags)


if __name__ == "__main__":
    main()
