"""Every setting the pipeline reads from the environment, with its documented default.

| variable | default | meaning |
|---|---|---|
| EMOJUDGE_HOME | ./.emojudge | warehouse (emojudge.duckdb), features/, models/, dagster/ |
| EMOJUDGE_PROFILE | local | local, paper or acoustic (see emojudge_models/profiles.py) |
| EMOJUDGE_AUDIO_ENCODER | profile's | whisper-ct2, acoustic, hf:<model id or path>[@revision], or JSON {"kind": ...} |
| EMOJUDGE_TEXT_ENCODER | profile's | minilm, hf:<model id or path>[@revision], or JSON {"kind": ...} |
| EMOJUDGE_TEXT_TRAINING | profile's | head (a head on cached text vectors, CPU) or finetune (the whole text encoder) |
| EMOJUDGE_DEVICE | auto | auto (cuda when available), cpu, cuda, cuda:1 ... |
| EMOJUDGE_BATCH_SECONDS | 100 | padded audio per encoder forward pass (~1000 for WavLM-Large bf16 on an 80 GB GPU) |
| EMOJUDGE_PITCH_TRACKER | yin | prosody pitch tracker: yin (fast) or pyin (the paper's, slow) |
| EMOJUDGE_AUDIO_POOLING | ensemble | ensemble (mean of attentive, meanstd, probe heads), auto (best on dev), or one |
| EMOJUDGE_SPEAKER_NORM | speaker | speaker (z-normalise frames per speaker, see speaker_norm.py) or none |
| EMOJUDGE_HEAD_LR | 1e-3 | learning rate of the heads trained on cached features |
| EMOJUDGE_MAX_EPOCHS, EMOJUDGE_PATIENCE | 40, 8 | head training length and early-stopping patience |
| EMOJUDGE_FUSION_FIT | train | fusion fitted on train logits with C chosen on development, or development (halves) |
| EMOJUDGE_ASR | {} | ASR options as JSON ({"model": path or HF id, "beam_size": 5, ...}); default Whisper tiny.en |
| EMOJUDGE_TRAIN_SETS | demo | comma-separated evaluation sets whose train/development splits train the models |
| EMOJUDGE_MAX_DURATION_S | 60 | clips longer than this are rejected at ingest |
| EMOJUDGE_DEMO_DATA | (generated) | a manifest.csv the demo ingests instead of the synthetic corpus |
| EMOJUDGE_JUDGE | profile's | local, openai-chat or openai-batch |
| EMOJUDGE_JUDGE_MODEL | backend's | judge model id |
| EMOJUDGE_JUDGE_BASE_URL | (OpenAI) | endpoint for openai-chat / openai-batch |
| EMOJUDGE_JUDGE_THRESHOLD | 0.8 | the judge may change a label only at or above this confidence |
| EMOJUDGE_JUDGE_TEMPERATURE | 0.3 | sampling temperature of the judge |
| EMOJUDGE_JUDGE_SCOPE | all | all predictions in the judged splits, or only disagreements between audio and text |
| EMOJUDGE_JUDGE_SPLITS | development,test,unsplit | splits the judge sees (unsplit: sets without splits) |
| EMOJUDGE_LOG_LEVEL | INFO | console log level of `emojudge materialize` runs |
| EMOJUDGE_JUDGE_GATE | development | development: apply the judge only if it did no net harm on development; off |
| EMOJUDGE_JUDGE_SHOW_PROBABILITY | 0 | 1 shows the judge the fused probability (small judges echo it as confidence) |
| OPENAI_API_KEY | - | read from the environment only, never stored |
"""

from __future__ import annotations

import os
from pathlib import Path


def env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def emojudge_home() -> Path:
    return Path(env("EMOJUDGE_HOME", ".emojudge")).resolve()


def train_sets() -> list[str]:
    return [name.strip() for name in env("EMOJUDGE_TRAIN_SETS", "demo").split(",") if name.strip()]


def dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to $EMOJUDGE_HOME/dagster so the CLI and the UI share runs and partitions."""
    return Path(env("DAGSTER_HOME", str(emojudge_home() / "dagster"))).resolve()
