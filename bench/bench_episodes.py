"""Episodes that tell the truth (issue 32): speakers and emotions of built episodes, scored as the inbox scores them.

Usage: python bench/bench_episodes.py [--quick] [--long] [--seeds 2] [--diarize-only] [--no-ami] [--work DIR]
       [--models trained|recipe]

1. **Folds of speakers.** RAVDESS actors 01-12 (``../shared/data/ravdess-dev``) in two speaker-grouped folds: fold A
   holds out actors 01-06, fold B actors 07-12. For each fold the default local profile is trained on the other six
   actors alone (``emojudge eval-set add`` of a manifest of theirs + ``materialize``, in its own home), and the
   held-out actors' isolated clips are scored by those models (``materialize --no-train``): the isolated-clip F1.
2. **Episodes** of the fold's held-out actors only, in two regimes: ``turn`` (every clip of a turn has the turn's
   emotion) and ``clip`` (each clip's emotion differs from the one before); 2-5 speakers, several seeds, MP3 (48 kHz
   stereo, 128 kb/s) and WAV alternately; turns of 1-4 clips, 0.25-0.8 s between clips of a turn, 0.6-2.5 s between
   turns, each actor panned differently, a -66 dBFS noise floor (bench_inbox's recipe). The position of every clip
   (trimmed of its silence) is the reference: speaker, emotion, start, end.
3. **Scored through the inbox**: ``emojudge inbox add`` (no speaker count) + ``emojudge inbox run`` in a child
   process on the fold's home, the local judge swapped for the tests' scripted server (keeps the fused label).
4. **Per episode**: speakers found and the count error; frame ARI (10 ms frames with one reference speaker);
   segment purity (share of segments whose reference clips, counted by an overlap of at least
   :data:`OVERLAP_S`, are of one speaker and one emotion); clip-level emotion F1-macro (each reference clip judged by
   the label of the segment covering its midpoint; none: wrong); the segmentation's ceiling (the same F1 when every
   segment is labelled with the emotion holding most of its reference speech); the models' F1 on the isolated clips
   of the episode's actors; reference speech inside segments.
5. **AMI** excerpts beside (``../shared/data/ami-debug``): speakers found against the reference, frame ARI, reference
   speech inside segments, the episode path's defaults, no count given.

``--models recipe`` scores with the shipped model's recipe instead (models/shipped_recipe.py: clips and their speech
copies, Whisper base layer and C by grouped CV), trained by ``bench/train_shipped_model.py`` on the fold's training
actors alone into a folder the fold's home reads as ``EMOJUDGE_SHIPPED_MODELS``, the home encoding with the layer that
fold chose (``EMOJUDGE_AUDIO_ENCODER``); nothing is trained in the home: what a user who trains nothing gets, on
voices the model never heard.
``--quick`` is fold A only with four 2-minute episodes (both regimes, MP3 and WAV, 3 and 5 speakers): a few minutes.
``--diarize-only`` skips training and scoring: segments and speakers only, in this process (``segment_and_diarize``
as ingest calls it), for every fold. ``--long`` adds one 60-minute episode per fold.
Prints a markdown report; paste it into bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inbox import (
    NOISE_DBFS,
    PAN,
    PAN_DEFAULT,
    RAVDESS,
    REPO,
    _ami_files,
    _cli,
    frame_ari,
    speech_covered,
)

BUILD_SR = 48_000
FOLDS = {
    "A": tuple(f"ravdess_actor{k:02d}" for k in range(1, 7)),
    "B": tuple(f"ravdess_actor{k:02d}" for k in range(7, 13)),
}
"""Held-out actors of each fold (3 male and 3 female each: RAVDESS odd actors are male)."""
REGIMES = ("turn", "clip")
OVERLAP_S = 0.25
"""A reference clip belongs to a segment when they overlap by at least this much."""
EPISODE_MINUTES = 2.0
RECIPE_MODEL = "ravdess-whisper-base-logreg"
"""The shipped model ``--models recipe`` trains per fold (bench/train_shipped_model.py)."""


@dataclass(frozen=True)
class Clip:
    """One reference clip placed in an episode (``speaker`` and times as bench_inbox's ``Turn``)."""

    speaker: str
    emotion: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Spec:
    """One built episode: its fold, held-out actors, regime, seed, length and container."""

    fold: str
    actors: tuple[str, ...]
    regime: str
    seed: int
    minutes: float
    suffix: str

    @property
    def name(self) -> str:
        return f"{self.fold}-{self.regime}-{len(self.actors)}spk-s{self.seed}-{self.minutes:g}min{self.suffix}"


def plan(quick: bool, seeds: int, long: bool) -> list[Spec]:
    """The episodes: quick is four of fold A; otherwise both folds x both regimes x 2-5 speakers x seeds (the actors
    of each drawn by its seed from the fold's six), MP3 and WAV alternately."""
    if quick:
        actors = FOLDS["A"]
        return [
            Spec("A", (actors[0], actors[1], actors[2]), "turn", 1, EPISODE_MINUTES, ".mp3"),
            Spec("A", (actors[0], actors[1], actors[2]), "clip", 1, EPISODE_MINUTES, ".wav"),
            Spec("A", actors[1:], "turn", 2, EPISODE_MINUTES, ".wav"),
            Spec("A", actors[1:], "clip", 2, EPISODE_MINUTES, ".mp3"),
        ]
    specs = []
    for fold, held in FOLDS.items():
        for regime in REGIMES:
            for count in range(2, 6):
                for seed in range(seeds):
                    rng = np.random.default_rng([ord(fold), count, seed])
                    actors = tuple(sorted(rng.choice(held, size=count, replace=False)))
                    suffix = (".mp3", ".wav")[(count + seed) % 2]
                    specs.append(Spec(fold, actors, regime, seed, EPISODE_MINUTES, suffix))
        if long:
            specs.append(Spec(fold, held[:4], "turn", 99, 60.0, ".mp3"))
    return specs


# --- building ------------------------------------------------------------------------------------------------------


@functools.cache
def actor_clips(data: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Each actor's (emotion, clip at 48 kHz mono trimmed of its silence 30 dB under the peak)."""
    import librosa
    import soundfile as sf

    clips: dict[str, list[tuple[str, np.ndarray]]] = {}
    for row in csv.DictReader((data / "manifest.csv").open(encoding="utf-8")):
        wave, sr = sf.read(data / row["path"], dtype="float32", always_2d=True)
        assert sr == BUILD_SR, f"{row['path']}: {sr} Hz"
        mono = wave.mean(axis=1)
        _, (start, end) = librosa.effects.trim(mono, top_db=30)
        clips.setdefault(row["speaker_id"], []).append((row["emotion"], mono[start:end]))
    return clips


def episode_blocks(spec: Spec, data: Path) -> Iterator[tuple[np.ndarray, list[Clip]]]:
    """Stereo (samples, 2) blocks, one turn each, with the reference clips each holds (see the module doc)."""
    rng = np.random.default_rng([spec.seed, len(spec.actors), ord(spec.regime[0]), ord(spec.fold)])
    clips = actor_clips(data)
    noise = 10 ** (NOISE_DBFS / 20)
    total = round(spec.minutes * 60 * BUILD_SR)

    def silence(length_s: float) -> np.ndarray:
        return rng.normal(0.0, noise, (round(length_s * BUILD_SR), 2)).astype(np.float32)

    position = BUILD_SR
    yield silence(1.0), []
    previous, emotion = None, None
    while position < total:
        speaker = str(rng.choice([actor for actor in spec.actors if actor != previous]))
        previous = speaker
        left, right = PAN.get(speaker, PAN_DEFAULT)
        own = clips[speaker]
        emotions = sorted({label for label, _ in own})
        if spec.regime == "turn":
            emotion = str(rng.choice(emotions))
        parts, placed = [], []
        for index in range(int(rng.integers(1, 5))):
            if index:
                gap = silence(rng.uniform(0.25, 0.8))
                parts.append(gap)
                position += len(gap)
            if spec.regime == "clip":
                emotion = str(rng.choice([label for label in emotions if label != emotion]))
            choices = [wave for label, wave in own if label == emotion]
            wave = choices[int(rng.integers(len(choices)))]
            stereo = np.stack([wave * left, wave * right], axis=1) + silence(len(wave) / BUILD_SR)[: len(wave)]
            parts.append(stereo.astype(np.float32))
            placed.append(Clip(speaker, str(emotion), position / BUILD_SR, (position + len(wave)) / BUILD_SR))
            position += len(wave)
        pause = silence(rng.uniform(0.6, 2.5))
        parts.append(pause)
        position += len(pause)
        yield np.concatenate(parts), placed


def build(spec: Spec, folder: Path, data: Path) -> tuple[Path, list[Clip]]:
    """Write the episode (MP3 through PyAV's LAME, or 16-bit WAV) block by block; returns it and its reference."""
    import av
    import soundfile as sf

    path = folder / spec.name
    reference: list[Clip] = []
    if spec.suffix == ".wav":
        with sf.SoundFile(path, "w", samplerate=BUILD_SR, channels=2, subtype="PCM_16") as out:
            for block, clips in episode_blocks(spec, data):
                reference += clips
                out.write(np.clip(block, -1.0, 1.0))
        return path, reference
    frame_size = 1152
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=BUILD_SR)
        stream.layout = "stereo"
        stream.bit_rate = 128_000
        carry = np.zeros((0, 2), dtype=np.float32)
        for block, clips in episode_blocks(spec, data):
            reference += clips
            carry = np.concatenate([carry, np.clip(block, -1.0, 1.0)])
            usable = len(carry) - len(carry) % frame_size
            for offset in range(0, usable, frame_size):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(carry[offset : offset + frame_size].T), format="fltp", layout="stereo"
                )
                frame.sample_rate = BUILD_SR
                for packet in stream.encode(frame):
                    container.mux(packet)
            carry = carry[usable:]
        for packet in stream.encode(None):
            container.mux(packet)
    return path, reference


# --- measures ------------------------------------------------------------------------------------------------------


def _members(segments: list[tuple[float, float]], reference: list[Clip]) -> list[list[tuple[Clip, float]]]:
    """Per segment, the reference clips overlapping it by at least OVERLAP_S, with the overlap in seconds."""
    members = []
    for start, end in segments:
        inside = []
        for clip in reference:
            overlap = min(end, clip.end_s) - max(start, clip.start_s)
            if overlap >= OVERLAP_S:
                inside.append((clip, overlap))
        members.append(inside)
    return members


def purity(segments: list[tuple[float, float]], reference: list[Clip]) -> tuple[float, int, int]:
    """Share of segments holding reference speech whose clips are of one speaker and one emotion; and the counts
    of segments spanning two speakers and two emotions."""
    held = [inside for inside in _members(segments, reference) if inside]
    two_speakers = sum(len({clip.speaker for clip, _ in inside}) > 1 for inside in held)
    two_emotions = sum(len({clip.emotion for clip, _ in inside}) > 1 for inside in held)
    pure = sum(len({(clip.speaker, clip.emotion) for clip, _ in inside}) == 1 for inside in held)
    return (pure / len(held) if held else float("nan")), two_speakers, two_emotions


def clip_labels(segments: list[tuple[float, float]], labels: list[str], reference: list[Clip]) -> list[str]:
    """Each reference clip's label: that of the segment covering its midpoint (``none`` when no segment does)."""
    starts = np.array([start for start, _ in segments])
    ends = np.array([end for _, end in segments])
    judged = []
    for clip in reference:
        middle = (clip.start_s + clip.end_s) / 2
        hit = np.flatnonzero((starts <= middle) & (ends > middle))
        judged.append(labels[int(hit[0])] if len(hit) else "none")
    return judged


def ceiling_labels(segments: list[tuple[float, float]], reference: list[Clip]) -> list[str]:
    """The best label each segment could get: the emotion holding most of its reference speech."""
    best = []
    for inside in _members(segments, reference):
        weight: dict[str, float] = {}
        for clip, overlap in inside:
            weight[clip.emotion] = weight.get(clip.emotion, 0.0) + overlap
        best.append(max(weight, key=weight.__getitem__) if weight else "none")
    return best


def f1_macro(truth: list[str], predicted: list[str]) -> float:
    """F1-macro over the emotions present in ``truth``."""
    from sklearn.metrics import f1_score

    present = sorted(set(truth))
    return float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0))


def score_episode(
    spec: Spec, reference: list[Clip], segments: list[tuple[float, float]], speakers: list[str], labels: list[str]
) -> dict:
    """Every per-episode figure of the module doc (the emotion ones only when ``labels`` are given)."""
    seconds = spec.minutes * 60 + 5
    pure, two_speakers, two_emotions = purity(segments, reference)
    row = {
        "episode": spec.name,
        "regime": spec.regime,
        "speakers": len(spec.actors),
        "found": len(set(speakers)),
        "count_error": len(set(speakers)) - len(spec.actors),
        "frame_ari": frame_ari(segments, speakers, reference, seconds),
        "purity": pure,
        "two_speakers": two_speakers,
        "two_emotions": two_emotions,
        "segments": len(segments),
        "covered": speech_covered(segments, reference, seconds),
    }
    if labels:
        truth = [clip.emotion for clip in reference]
        row["f1"] = f1_macro(truth, clip_labels(segments, labels, reference))
        row["ceiling"] = f1_macro(truth, clip_labels(segments, ceiling_labels(segments, reference), reference))
    return row


# --- child processes (each prints one JSON line last) --------------------------------------------------------------


def fold_manifest(folder: Path, data: Path, actors: tuple[str, ...]) -> Path:
    """A manifest of ``actors``' rows in ``folder``, its ``audio`` a link to the corpus's (nothing copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "audio"
    if not link.exists():
        link.symlink_to(data / "audio", target_is_directory=True)
    with (data / "manifest.csv").open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row["speaker_id"] in actors]
        fields = reader.fieldnames or []
    manifest = folder / "manifest.csv"
    with manifest.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def child_train(train_manifest: str, test_manifest: str, models: str) -> dict:
    """Train on the training actors' set (``models`` "trained"; "recipe": nothing to train, the shipped-models folder
    holds the fold's model), then score the held-out actors' isolated clips without training."""
    from emojudge_models.settings import Settings
    from emojudge_models.store import warehouse

    started = time.perf_counter()
    if models == "trained":
        _cli(["eval-set", "add", "train", train_manifest, "--format", "manifest"])
        _cli(["materialize", "train"])
    trained_s = time.perf_counter() - started
    _cli(["eval-set", "add", "heldout", test_manifest, "--format", "manifest"])
    _cli(["materialize", "heldout", "--no-train"])
    with warehouse.connect(Settings.from_env().home, read_only=True) as con:
        rows = con.execute(
            "SELECT u.speaker_id, u.emotion, p.final_label FROM predictions p JOIN utterances u "
            "USING (eval_set, utterance_id) WHERE p.eval_set = 'heldout'"
        ).fetchall()
    return {"train_s": trained_s, "wall_s": time.perf_counter() - started, "isolated": rows}


def child_score(episode: str) -> dict:
    """``inbox add`` + ``inbox run`` of one episode (no speaker count); its segments, speakers and labels."""
    from emojudge_models.settings import Settings
    from emojudge_models.store import warehouse

    started = time.perf_counter()
    [added] = _cli(["inbox", "add", episode])
    name = added.split()[0]
    _cli(["inbox", "run"])
    wall = time.perf_counter() - started
    with warehouse.connect(Settings.from_env().home, read_only=True) as con:
        rows = con.execute(
            "SELECT u.start_s, u.end_s, u.speaker_id, p.final_label FROM utterances u LEFT JOIN predictions p "
            "USING (eval_set, utterance_id) WHERE u.eval_set = ? ORDER BY u.start_s",
            [name],
        ).fetchall()
    return {"name": name, "wall_s": wall, "rows": rows}


def _child(argv: list[str], env: dict[str, str]) -> dict:
    process = subprocess.run(
        [sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0:
        sys.stderr.write(process.stdout[-4000:] + process.stderr[-4000:])
        raise SystemExit(f"child {argv[0]} failed with exit status {process.returncode}")
    return json.loads(process.stdout.strip().splitlines()[-1])


# --- the report ----------------------------------------------------------------------------------------------------


def diarized(path: Path) -> tuple[list[tuple[float, float]], list[str]]:
    """Segments and speakers as ingest makes them (decode, then ``segment_and_diarize``, no count)."""
    from emojudge_models.episodes.decode import decode_episode
    from emojudge_models.episodes.speakers import segment_and_diarize

    decoded = decode_episode(path)
    segments, who = segment_and_diarize("bench", decoded.wave)
    return [(s.start_s, s.end_s) for s in segments], who.speaker_ids


def ami_rows() -> list[dict]:
    """AMI excerpts with the episode defaults and no count: speakers found, frame ARI, speech inside segments."""
    import soundfile as sf

    from emojudge_models.episodes.speakers import segment_and_diarize

    rows = []
    for name, (path, turns) in _ami_files().items():
        wave, _ = sf.read(path, dtype="float32")
        seconds = len(wave) / 16_000
        segments, who = segment_and_diarize(name, wave)
        spans = [(s.start_s, s.end_s) for s in segments]
        rows.append(
            {
                "excerpt": name,
                "speakers": len({turn.speaker for turn in turns}),
                "found": len(set(who.speaker_ids)),
                "frame_ari": frame_ari(spans, who.speaker_ids, turns, seconds),
                "covered": speech_covered(spans, turns, seconds),
            }
        )
    return rows


def _means(table, columns: list[str]):
    summary = table.groupby("regime")[columns].mean()
    summary.loc["all"] = table[columns].mean()
    summary["count exact"] = [
        *(table.groupby("regime")["count_error"].apply(lambda e: (e == 0).mean())),
        (table["count_error"] == 0).mean(),
    ]
    summary["max abs count error"] = [
        *(table.groupby("regime")["count_error"].apply(lambda e: e.abs().max())),
        table["count_error"].abs().max(),
    ]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fold A, four 2-minute episodes")
    parser.add_argument("--seeds", type=int, default=2, help="episodes per fold, regime and speaker count")
    parser.add_argument("--long", action="store_true", help="add one 60-minute episode per fold")
    parser.add_argument("--diarize-only", action="store_true", help="segments and speakers only, no models")
    parser.add_argument("--no-ami", action="store_true", help="skip the AMI excerpts")
    parser.add_argument("--work", type=Path, default=None, help="work folder (fold homes are reused from it)")
    parser.add_argument("--data", type=Path, default=RAVDESS, help="RAVDESS folder with manifest.csv")
    parser.add_argument(
        "--models",
        choices=("trained", "recipe"),
        default="trained",
        help="trained: the pipeline's models trained on the fold; recipe: the shipped recipe trained on the fold",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_train(*rest) if kind == "train" else child_score(rest[0])
        print(json.dumps(result))
        return
    import pandas as pd

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-episodes-"))
    work.mkdir(parents=True, exist_ok=True)
    specs = plan(args.quick, args.seeds, args.long)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.2f}; {len(specs)} episodes, work folder {work}\n",
        flush=True,
    )
    rows, isolated_f1 = [], {}
    scorer = None if args.diarize_only else _FoldScorer(work, args.data, args.models)
    for spec in specs:
        path, reference = build(spec, work, args.data)
        if scorer is None:
            segments, speakers = diarized(path)
            row = score_episode(spec, reference, segments, speakers, [])
        else:
            segments, speakers, labels, wall, isolated = scorer.score(spec, path)
            row = score_episode(spec, reference, segments, speakers, labels)
            row |= {"isolated_f1": isolated, "wall_s": wall}
            isolated_f1[spec.fold] = scorer.fold_f1(spec.fold)
        path.unlink()
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    table = pd.DataFrame(rows)
    columns = ["count_error", "frame_ari", "purity", "two_speakers", "two_emotions", "covered"]
    if scorer is not None:
        table["f1_ratio"] = table["f1"] / table["isolated_f1"]
        columns += ["f1", "ceiling", "isolated_f1", "f1_ratio"]
    print("\nPer episode:\n\n" + table.round(3).to_markdown(index=False))
    print("\nMeans by regime:\n\n" + _means(table, columns).round(3).to_markdown())
    if isolated_f1:
        print("\nIsolated-clip F1-macro of each fold's models on all its held-out actors: ", json.dumps(isolated_f1))
    if not args.no_ami:
        ami = pd.DataFrame(ami_rows())
        ami["count_error"] = ami["found"] - ami["speakers"]
        print("\nAMI excerpts (episode defaults, no count):\n\n" + ami.round(3).to_markdown(index=False))
        print(
            f"\nAMI means: |count error| {ami['count_error'].abs().mean():.2f} (within one on "
            f"{(ami['count_error'].abs() <= 1).sum()}/{len(ami)}), frame ARI {ami['frame_ari'].mean():.3f}, "
            f"speech inside segments {ami['covered'].mean():.3f}"
        )
    summary = _means(table, columns).loc["all"]
    print(
        f"\nepisodes: n={len(table)} count_exact={summary['count exact']:.2f} ari={summary['frame_ari']:.3f} "
        f"purity={summary['purity']:.3f}" + (f" f1_ratio={summary['f1_ratio']:.3f}" if scorer else "")
    )


class _FoldScorer:
    """Each fold's home, trained once on the other actors (reused from ``work`` when present), scoring episodes."""

    def __init__(self, work: Path, data: Path, models: str) -> None:
        self.work, self.data, self.models = work, data, models
        self.isolated: dict[str, list] = {}

    def _env(self, fold: str) -> dict[str, str]:
        home = self.work / f"home-{self.models}-{fold}"
        shipped = {}
        if self.models == "recipe":  # the fold's recipe chose its encoder layer on the fold's training actors
            from train_shipped_model import layer_encoder

            folder = self._recipe(fold)
            figures = json.loads((folder / RECIPE_MODEL / "figures.json").read_text())
            shipped = {
                "EMOJUDGE_SHIPPED_MODELS": str(folder),
                "EMOJUDGE_AUDIO_ENCODER": json.dumps(layer_encoder(figures["layer"])),
            }
        return {
            **shipped,
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "EMOJUDGE_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "EMOJUDGE_INBOX": str(self.work / f"inbox-{self.models}-{fold}"),
            "EMOJUDGE_TRAIN_SETS": "train",
            "EMOJUDGE_JUDGE": "openai-chat",
            "EMOJUDGE_JUDGE_BASE_URL": self._api().base_url,
            "OPENAI_API_KEY": "sk-bench",
        }

    @functools.cache  # noqa: B019  (one scorer per run)
    def _api(self):
        sys.path.insert(0, str(REPO / "tests"))
        from batch_api_server import FakeOpenAIServer

        return FakeOpenAIServer(max_lifetime_s=7200).__enter__()

    def _training_actors(self, fold: str) -> tuple[str, ...]:
        return tuple(a for actors in FOLDS.values() for a in actors if a not in FOLDS[fold])

    @functools.cache  # noqa: B019  (one scorer per run)
    def _recipe(self, fold: str) -> Path:
        """The fold's shipped-models folder: the recipe trained on the fold's training actors alone."""
        from train_shipped_model import build

        folder = self.work / f"shipped-{fold}"
        if not (folder / RECIPE_MODEL / "model.safetensors").is_file():
            actors = [actor.removeprefix("ravdess_actor") for actor in self._training_actors(fold)]
            build(self.data, self.work / "frames", RECIPE_MODEL, folder / RECIPE_MODEL, actors, check_profile=False)
        return folder

    def _trained(self, fold: str) -> dict[str, str]:
        env = self._env(fold)
        if fold not in self.isolated:
            cache = self.work / f"isolated-{self.models}-{fold}.json"
            if not cache.is_file():
                train = fold_manifest(self.work / f"corpus-{fold}-train", self.data, self._training_actors(fold))
                test = fold_manifest(self.work / f"corpus-{fold}-heldout", self.data, FOLDS[fold])
                result = _child(["train", str(train), str(test), self.models], env)
                print(f"fold {fold}: trained in {result['train_s']:.0f} s", flush=True)
                cache.write_text(json.dumps(result["isolated"]))
            self.isolated[fold] = json.loads(cache.read_text())
        return env

    def fold_f1(self, fold: str, actors: tuple[str, ...] | None = None) -> float:
        rows = [row for row in self.isolated[fold] if actors is None or row[0] in actors]
        return f1_macro([row[1] for row in rows], [row[2] for row in rows])

    def score(self, spec: Spec, path: Path) -> tuple[list, list, list, float, float]:
        result = _child(["score", str(path)], self._trained(spec.fold))
        rows = result["rows"]
        segments = [(row[0], row[1]) for row in rows]
        labels = [row[3] or "none" for row in rows]
        return segments, [row[2] for row in rows], labels, result["wall_s"], self.fold_f1(spec.fold, spec.actors)


if __name__ == "__main__":
    main()
