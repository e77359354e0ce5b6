"""Evaluation sets are dynamic partitions: one key per registered set (``emojudge eval-set add``)."""

from __future__ import annotations

import dagster as dg

EVAL_SETS_PARTITION = "eval_sets"
eval_sets_partitions = dg.DynamicPartitionsDefinition(name=EVAL_SETS_PARTITION)
