"""Step hooks of every job: the models a step loaded are released when it ends, so a run whose steps share one
process (scoring runs, `emojudge materialize`) holds one step's models at a time, not all of them."""

import dagster as dg

from emojudge_models.loaded_models import release_loaded_models


def _release(context: dg.HookContext) -> None:
    released = release_loaded_models()
    if released:
        context.log.debug(f"released {released} model(s) loaded by {context.step_key}")


@dg.success_hook(name="release_models_after_step")
def release_models_after_step(context: dg.HookContext) -> None:
    _release(context)


@dg.failure_hook(name="release_models_after_failed_step")
def release_models_after_failed_step(context: dg.HookContext) -> None:
    _release(context)


STEP_HOOKS = {release_models_after_step, release_models_after_failed_step}
