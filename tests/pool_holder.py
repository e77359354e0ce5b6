"""A real Dagster run in the ``emojudge_warehouse`` pool, run as its own process by tests/test_unattended.py.

``python pool_holder.py hold tagged|untagged`` claims the pool's slot, prints ``holding <run id>`` and sleeps until
it is killed: a stand-in for a crashed ``emojudge materialize`` (tagged with its process, as the CLI tags its runs)
or for a run started by another Dagster tool (untagged). ``python pool_holder.py queue`` asks for the same slot
under :class:`RunWatchdog` without the CLI's pool wait, so it waits inside Dagster's own loop, which defers signals.
"""

import sys
import time
import uuid

import dagster as dg

from emojudge_pipeline.instance import RunWatchdog, instance, interruptible, process_tags

POOL = "emojudge_warehouse"
"""emojudge_pipeline.assets.common.WAREHOUSE_POOL, spelled out so this process does not import the assets (torch)."""


@dg.asset(pool=POOL)
def holds_the_warehouse(context: dg.AssetExecutionContext) -> None:
    print(f"holding {context.run_id}", flush=True)
    while True:
        time.sleep(0.2)


def main() -> None:
    mode = sys.argv[1]
    job = dg.Definitions(assets=[holds_the_warehouse]).resolve_implicit_global_asset_job_def()
    inst = instance()
    if mode == "hold":
        tags = process_tags() if sys.argv[2] == "tagged" else None
        job.execute_in_process(instance=inst, tags=tags)
    else:
        run_id = str(uuid.uuid4())
        print(f"queued {run_id}", flush=True)
        with interruptible(), RunWatchdog(inst, run_id):
            job.execute_in_process(instance=inst, run_id=run_id, tags=process_tags(), raise_on_error=False)


if __name__ == "__main__":
    main()
