"""Where the episodes' emotion gap comes from (issue 32): the same clips, step by step from isolated to diarized.

``bench_episodes.py --models recipe`` scores built two-minute episodes at 0.75 x the isolated clips' F1 (target 0.95 x).
This bench takes that gap apart on the same episodes (``bench_episodes.plan``: both folds, both regimes, 2-5
speakers, one seed: 16 episodes), each fold's model being the shipped recipe (models/shipped_recipe.py, clips and
speech copies) trained on the other fold's six actors. Every row is the mean over episodes of the F1-macro of the
episode's reference clips (the emotions present), each clip scored as:

1. ``isolated``: the episode's actors' clips as recorded, normalised per speaker over all their clips (what
   bench_episodes reports as the isolated-clip F1);
2. ``speech copies``: the same clips trimmed of their silence (``shipped_recipe.speech_copy``) and encoded alone;
3. ``clips / copies drawn as the episode``: each reference clip replaced by a clip (a copy) of the same actor and
   emotion drawn at random (20 draws): the per-episode F1 of a sample of the episode's size and make-up;
4. ``episode's clips, episode normalisation``: the speech copies of the very clips the episode holds (matched by
   actor, emotion and length), each speaker normalised over its clips in the episode;
5. ``..., full normalisation``: the same, each speaker normalised over all of its copies (every emotion it has);
6. ``oracle cuts``: the reference spans cut from the rendered episode (MP3 or WAV, panned, noise floor), true
   speakers, episode normalisation: the pipeline's input with perfect segments and speakers;
7. levers on the oracle cuts: each speaker's statistics shrunk toward the training speakers' speech-copy statistics
   with weight t / (t + T0) for t seconds of its speech (features/speaker_norm.py ``shrink_toward``), and each
   speaker normalised over its clips in every episode of its fold (a recurring speaker pooled over a series).

``--long`` adds episodes of 6-60 minutes (held-out actors of each fold; oracle cuts with true speakers, and with the
speakers the episode path finds: ``segment_and_diarize``'s passes, no count given).

Run by hand: ``python bench/bench_episode_emotion_gap.py [--long] [--work DIR]`` (frames cached in
train_shipped_model's cache; about 2 minutes on 2 cores, ``--long`` 11 more).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_episodes import FOLDS, Clip, Spec, build, clip_labels, f1_macro, plan
from bench_speaker_norm_skew import moments
from train_shipped_model import DEFAULT_CACHE, DEFAULT_DATA, encode, frames_of, targets

from emojudge_models.episodes.decode import decode_episode
from emojudge_models.features.speaker_norm import STD_FLOOR, shrink_toward
from emojudge_models.labels import EMOTIONS
from emojudge_models.models import shipped_recipe
from emojudge_models.models.linear_probe import pooled_stats
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DRAWS = 20
SHRINK_T0_S = (5.0, 10.0, 20.0, 40.0)
FRAMES_PER_S = 50.0
"""Whisper encoder frames per second of audio."""
LONG = (
    (("turn", 99, 60.0, ".mp3"), slice(0, 4)),
    (("clip", 5, 30.0, ".wav"), slice(1, 4)),
    (("turn", 6, 20.0, ".wav"), slice(0, 6, 5)),
    (("clip", 7, 20.0, ".wav"), slice(0, 5)),
    (("turn", 8, 10.0, ".wav"), slice(2, 6)),
    (("turn", 9, 6.0, ".wav"), slice(0, 6, 2)),
)
"""Long episodes of each fold: (regime, seed, minutes, container) and which of the fold's six actors speak."""


class Data:
    """The RAVDESS clips' frames (as recorded and as speech copies), labels, speakers and 48 kHz trimmed lengths."""

    def __init__(self, data: Path, cache: Path) -> None:
        import librosa

        rows, self.frames, _ = encode(data, cache)
        _, self.copies, _ = encode(data, cache, speech_copies=True)
        self.y, self.speakers = targets(rows)
        self.emotions = np.array([EMOTIONS[i] for i in self.y])
        self.x = shipped_recipe.normalised_stats(self.frames, self.speakers)
        self.x_copies = shipped_recipe.normalised_stats(self.copies, self.speakers)
        lengths = []
        for row in rows:  # how bench_episodes.actor_clips trims a clip before laying it into an episode
            wave, _ = sf.read(data / row["path"], dtype="float32", always_2d=True)
            _, (start, end) = librosa.effects.trim(wave.mean(axis=1), top_db=30)
            lengths.append(end - start)
        self.lengths_48k = np.array(lengths)

    def source(self, clip: Clip) -> int:
        """The clip an episode's reference clip was laid from (same actor, emotion and trimmed length)."""
        samples = round((clip.end_s - clip.start_s) * 48_000)
        match = (self.speakers == clip.speaker) & (self.emotions == clip.emotion)
        found = np.flatnonzero(match & (np.abs(self.lengths_48k - samples) <= 1))
        if not len(found):
            raise LookupError(f"no source clip of {clip.speaker} {clip.emotion} lasting {samples} samples")
        return int(found[0])


def normalised(
    frames: list[np.ndarray],
    speakers: list[str],
    stats: Callable[[str, list[int]], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Mean ++ std of each clip's frames after its speaker's (mean, std) from ``stats(speaker, its clip indices)``."""
    groups = np.array(speakers)
    out: list[np.ndarray] = [np.empty(0)] * len(frames)
    for speaker in dict.fromkeys(speakers):
        members = np.flatnonzero(groups == speaker).tolist()
        mean, std = stats(speaker, members)
        for i in members:
            out[i] = (frames[i] - mean) / np.maximum(std, STD_FLOOR)
    return pooled_stats(out)


class Fold:
    """One fold's recipe model (trained on the other fold's actors) and what scoring with it needs."""

    def __init__(self, data: Data, held_out: tuple[str, ...]) -> None:
        self.data = data
        held = np.isin(data.speakers, held_out)
        train = shipped_recipe.with_copies(data.x[~held], data.x_copies[~held], data.y[~held], data.speakers[~held])
        self.model = shipped_recipe.train(*train).model
        self.pool = moments([data.copies[i] for i in np.flatnonzero(~held)])

    def labels(self, stats: np.ndarray) -> list[str]:
        return [EMOTIONS[i] for i in shipped_recipe.predict_stats(self.model, stats).argmax(axis=1)]

    def own_norm(self, frames: list[np.ndarray], speakers: list[str]) -> list[str]:
        return self.labels(normalised(frames, speakers, lambda _, members: moments([frames[i] for i in members])))

    def shrunk_norm(self, frames: list[np.ndarray], speakers: list[str], t0_s: float) -> list[str]:
        def stats(_: str, members: list[int]) -> tuple[np.ndarray, np.ndarray]:
            speech_s = sum(len(frames[i]) for i in members) / FRAMES_PER_S
            return shrink_toward(moments([frames[i] for i in members]), self.pool, speech_s / (speech_s + t0_s))

        return self.labels(normalised(frames, speakers, stats))


def oracle_cuts(wave: np.ndarray, reference: list[Clip]) -> list[np.ndarray]:
    """Encoder frames of each reference clip's span cut from the decoded episode (as the feature store keeps them)."""
    return frames_of([wave[int(c.start_s * SAMPLE_RATE_HZ) : int(c.end_s * SAMPLE_RATE_HZ)] for c in reference])


def drawn(data: Data, fold: Fold, reference: list[Clip], stats: np.ndarray, rng: np.random.Generator) -> float:
    """Mean F1 over :data:`DRAWS` samples in which each reference clip is a random clip of its actor and emotion."""
    predicted = np.array(fold.labels(stats))
    truth = [clip.emotion for clip in reference]
    pools = [np.flatnonzero((data.speakers == c.speaker) & (data.emotions == c.emotion)) for c in reference]
    return float(np.mean([f1_macro(truth, [predicted[rng.choice(p)] for p in pools]) for _ in range(DRAWS)]))


def short_rows(data: Data, folds: dict[str, Fold], work: Path) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    rng = np.random.default_rng(0)
    series: dict[str, list[tuple[Spec, list[Clip], list[np.ndarray]]]] = {}
    for spec in plan(False, 1, False):
        fold = folds[spec.fold]
        path, reference = build(spec, work, DEFAULT_DATA)
        cuts = oracle_cuts(decode_episode(path).wave, reference)
        path.unlink()
        series.setdefault(spec.fold, []).append((spec, reference, cuts))
        truth = [clip.emotion for clip in reference]
        speakers = [clip.speaker for clip in reference]
        actors = np.isin(data.speakers, spec.actors)
        sources = [data.source(clip) for clip in reference]
        copies = [data.copies[i] for i in sources]
        figures = {
            "isolated": f1_macro(list(data.emotions[actors]), fold.labels(data.x[actors])),
            "speech copies": f1_macro(list(data.emotions[actors]), fold.labels(data.x_copies[actors])),
            "clips drawn as the episode": drawn(data, fold, reference, data.x, rng),
            "copies drawn as the episode": drawn(data, fold, reference, data.x_copies, rng),
            "episode's clips (copies), episode normalisation": f1_macro(truth, fold.own_norm(copies, speakers)),
            "episode's clips (copies), full normalisation": f1_macro(truth, fold.labels(data.x_copies[sources])),
            "oracle cuts, episode normalisation": f1_macro(truth, fold.own_norm(cuts, speakers)),
        }
        for t0 in SHRINK_T0_S:
            figures[f"oracle cuts, shrunk toward training speakers, T0 {t0:g} s"] = f1_macro(
                truth, fold.shrunk_norm(cuts, speakers, t0)
            )
        for name, value in figures.items():
            rows.setdefault(name, []).append(value)
        print(spec.name, json.dumps({k: round(v, 3) for k, v in figures.items()}), flush=True)
    for fold_name, episodes in series.items():
        pooled: dict[str, list[np.ndarray]] = {}
        for _, reference, cuts in episodes:
            for clip, frames in zip(reference, cuts, strict=True):
                pooled.setdefault(clip.speaker, []).append(frames)
        series_stats = {speaker: moments(frames) for speaker, frames in pooled.items()}
        for _, reference, cuts in episodes:
            speakers = [clip.speaker for clip in reference]
            labels = folds[fold_name].labels(normalised(cuts, speakers, lambda s, _, stats=series_stats: stats[s]))
            rows.setdefault("oracle cuts, a speaker pooled over its fold's 8 episodes", []).append(
                f1_macro([clip.emotion for clip in reference], labels)
            )
    return rows


def found_speakers(wave: np.ndarray, reference: list[Clip]) -> list[str]:
    """The speaker the episode path finds (``segment_and_diarize``, no count) for each reference clip: that of the
    segment covering the clip's midpoint (``none`` where no segment does)."""
    from emojudge_models.episodes.speakers import segment_and_diarize

    segments, diarization = segment_and_diarize("episode", wave)
    return clip_labels([(s.start_s, s.end_s) for s in segments], diarization.speaker_ids, reference)


def long_rows(data: Data, folds: dict[str, Fold], work: Path) -> list[dict]:
    out = []
    for fold_name, held in FOLDS.items():
        fold = folds[fold_name]
        for (regime, seed, minutes, suffix), which in LONG:
            spec = Spec(fold_name, held[which], regime, seed, minutes, suffix)
            path, reference = build(spec, work, DEFAULT_DATA)
            wave = decode_episode(path).wave
            path.unlink()
            cuts = oracle_cuts(wave, reference)
            found = found_speakers(wave, reference)
            truth = [clip.emotion for clip in reference]
            actors = np.isin(data.speakers, spec.actors)
            isolated = f1_macro(list(data.emotions[actors]), fold.labels(data.x[actors]))
            oracle = f1_macro(truth, fold.own_norm(cuts, [clip.speaker for clip in reference]))
            diarized = f1_macro(truth, fold.own_norm(cuts, found))
            row = {
                "episode": spec.name,
                "clips": len(reference),
                "isolated": isolated,
                "oracle": oracle,
                "diarized": diarized,
            }
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="add episodes of 6-60 minutes")
    parser.add_argument("--work", type=Path, default=None, help="where episodes are built (removed after use)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-emotion-gap-"))
    work.mkdir(parents=True, exist_ok=True)
    data = Data(DEFAULT_DATA, DEFAULT_CACHE)
    folds = {name: Fold(data, held) for name, held in FOLDS.items()}
    rows = short_rows(data, folds, work)
    isolated = np.mean(rows["isolated"])
    print("\n| 16 two-minute episodes, each clip scored as | F1-macro (fold A / B) | / isolated |")
    print("|---|---|---|")
    for name, values in rows.items():
        half = len(values) // 2
        print(
            f"| {name} | {np.mean(values):.3f} ({np.mean(values[:half]):.3f} / {np.mean(values[half:]):.3f}) "
            f"| {np.mean(values) / isolated:.2f} |"
        )
    if args.long:
        table = long_rows(data, folds, work)
        print("\n| episode | clips | isolated | oracle cuts | / isolated | found speakers | / isolated |")
        print("|---|---|---|---|---|---|---|")
        for row in table:
            print(
                f"| {row['episode']} | {row['clips']} | {row['isolated']:.3f} | {row['oracle']:.3f} "
                f"| {row['oracle'] / row['isolated']:.2f} | {row['diarized']:.3f} "
                f"| {row['diarized'] / row['isolated']:.2f} |"
            )
        print(
            f"| mean | | | | {np.mean([r['oracle'] / r['isolated'] for r in table]):.2f} | "
            f"| {np.mean([r['diarized'] / r['isolated'] for r in table]):.2f} |"
        )


if __name__ == "__main__":
    main()
