"""Models kept loaded by their loaders, and released between steps."""

import gc
import weakref

from emojudge_models.loaded_models import kept_loaded, models_kept, release_loaded_models


class _Model:
    """Stands in for a loaded model: something a loader builds once and callers share."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_a_kept_model_is_shared_until_released_then_freed_and_loaded_again() -> None:
    loads: list[str] = []

    @kept_loaded(maxsize=2)
    def load(name: str) -> _Model:
        loads.append(name)
        return _Model(name)

    first = load("base")
    assert load("base") is first and loads == ["base"]
    before = models_kept()
    gone = weakref.ref(first)
    del first
    assert release_loaded_models() == before >= 1
    gc.collect()
    assert gone() is None and models_kept() == 0
    assert load("base").name == "base" and loads == ["base", "base"]
    release_loaded_models()
