"""EmoJudge's Dagster code location (``dagster ... -m emojudge_pipeline.definitions``) and the ``emojudge`` command.

The definitions are not imported here: importing the package (as the command does) must not load them, so the
command can report a bad setting itself, in one line, before anything is built.
"""
