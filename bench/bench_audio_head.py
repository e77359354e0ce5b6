"""Hand-run check that the audio head learns real emotions: RAVDESS dev clips, librosa MFCC frames
standardised with train-set statistics.

Speaker-disjoint split (actors in DEV_SPEAKERS -> development), attentive vs mean+std pooling, three seeds each;
prints dev F1-macro and training time. Usage: .venv/bin/python bench/bench_audio_head.py
"""

from __future__ import annotations

import time
from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from emojudge_models.labels import emotion_index
from emojudge_models.models.heads import HeadConfig
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.training import HeadTrainingConfig, train_audio_head

DATA = Path(__file__).resolve().parents[2] / "shared/data/ravdess-dev"
DEV_FRACTION = 0.25


def mfcc_frames(path: Path) -> np.ndarray:
    """40 MFCCs + deltas at 100 frames/s: (T, 80) float32."""
    wave, _ = librosa.load(path, sr=16_000, mono=True)
    mfcc = librosa.feature.mfcc(y=wave, sr=16_000, n_mfcc=40, hop_length=160, n_fft=400)
    return np.concatenate([mfcc, librosa.feature.delta(mfcc)]).T


def main() -> None:
    manifest = pd.read_csv(DATA / "manifest.csv")
    speakers = sorted(manifest.speaker_id.unique())
    dev_speakers = set(speakers[: max(1, round(DEV_FRACTION * len(speakers)))])
    started = time.perf_counter()
    frames = [mfcc_frames(DATA / row.path) for row in manifest.itertuples()]
    is_dev = manifest.speaker_id.isin(dev_speakers).to_numpy()
    train_frames = np.concatenate([f for f, dev in zip(frames, is_dev, strict=True) if not dev])
    mean, std = train_frames.mean(0), train_frames.std(0) + 1e-5
    labels = [emotion_index(emotion) for emotion in manifest.emotion]
    items = [(((f - mean) / std).astype(np.float16), label) for f, label in zip(frames, labels, strict=True)]
    print(f"features: {len(items)} clips in {time.perf_counter() - started:.1f}s; dev speakers {sorted(dev_speakers)}")
    train = [item for item, dev in zip(items, is_dev, strict=True) if not dev]
    dev = [item for item, dev in zip(items, is_dev, strict=True) if dev]
    for pooling in ("attentive", "meanstd"):
        for seed in (0, 1, 2):
            config = HeadTrainingConfig(
                head=HeadConfig(task="categorical", input_dim=80, pooling=pooling, hidden_dim=128, dropout=0.3),
                train=TrainConfig(lr=1e-3, batch_size=16, max_epochs=40, patience=10),
            )
            started = time.perf_counter()
            result = train_audio_head(train, dev, config, "cpu", seed=seed)
            print(
                f"{pooling:9s} seed {seed}: dev F1-macro {result.dev_metric:.3f} at epoch {result.best_epoch} "
                f"({len(result.history)} epochs, {time.perf_counter() - started:.1f}s; {len(train)}/{len(dev)} clips)"
            )


if __name__ == "__main__":
    main()
