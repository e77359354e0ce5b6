"""The one sample rate of the project: every clip, episode segment and encoder input is 16 kHz mono float32."""

SAMPLE_RATE_HZ = 16_000
