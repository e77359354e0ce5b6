"""EmoJudge's Dagster code location (``dagster ... -m emojudge_pipeline``)."""

from emojudge_pipeline.definitions import defs

__all__ = ["defs"]
