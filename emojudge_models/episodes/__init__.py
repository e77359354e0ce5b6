"""Podcast episodes: streaming decode, utterance segmentation, speakers, sidecar transcripts and timelines.

Plain library (no Dagster): the inbox sensor and assets call these functions.
"""
