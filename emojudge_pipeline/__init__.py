"""EmoJudge's Dagster code location (``dagster ... -m emojudge_pipeline.definitions``) and the ``emojudge`` command.

The definitions are not imported here: importing the package (as the command does) must not load them, so the
command can report a bad setting itself, in one line, before anything is built.
"""

import os

# Runs log through Dagster; third-party progress bars (Hugging Face downloads and weight loading) only add noise
# to the run logs. A user's own setting wins.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
