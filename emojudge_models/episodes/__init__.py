"""Podcast episodes: streaming decode, utterance segmentation, speakers, sidecar transcripts and timelines.

Plain library (no Dagster): the inbox sensor and assets call these functions.
"""

EPISODE_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".mp4", ".ogg", ".oga", ".opus")
"""Audio the podcast inbox takes (here, light, so ``emojudge inbox add`` checks names before any heavy import)."""
