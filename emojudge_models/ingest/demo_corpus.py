"""A small synthetic emotional-speech corpus that the project generates itself, so the demo runs anywhere.

Clips are voiced "syllables" (a glottal-like harmonic source through vowel formants) whose pitch level, pitch
movement, loudness and rate follow each emotion, spoken by six synthetic speakers; transcripts carry emotional
words most of the time. It exercises every stage, including rejections: the manifest also lists an empty file,
a too-short clip, an all-silent clip, a duplicate id and a path that escapes the corpus root.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from emojudge_models.labels import EMOTIONS
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

CLIPS_PER_SPEAKER_AND_EMOTION = 3
SPEAKERS = (
    ("spk1", "female", 1.0),
    ("spk2", "male", 0.55),
    ("spk3", "female", 0.9),
    ("spk4", "male", 0.6),
    ("spk5", "female", 1.1),
    ("spk6", "male", 0.5),
)
"""(speaker id, gender, pitch scale relative to a 220 Hz base)."""


@dataclass(frozen=True)
class EmotionStyle:
    """How an emotion sounds in the synthetic corpus, and what its attribute ratings are (1-7 scale)."""

    pitch_scale: float
    pitch_swing: float
    level_dbfs: float
    syllables_per_s: float
    breathiness: float
    attributes: tuple[float, float, float]
    sentences: tuple[str, ...]


STYLES: dict[str, EmotionStyle] = {
    "angry": EmotionStyle(
        1.25,
        0.25,
        -12,
        5.5,
        0.15,
        (6.2, 2.0, 6.0),
        ("I am furious about this", "This is outrageous and I hate it", "Stop it right now"),
    ),
    "sad": EmotionStyle(
        0.85,
        0.04,
        -30,
        2.4,
        0.35,
        (2.0, 2.2, 2.5),
        ("I miss her so much", "Everything feels hopeless today", "I lost it all"),
    ),
    "happy": EmotionStyle(
        1.3,
        0.3,
        -16,
        4.8,
        0.1,
        (5.5, 6.3, 5.0),
        ("This is wonderful news", "I am so glad you came", "What a lovely day"),
    ),
    "surprise": EmotionStyle(
        1.5,
        0.45,
        -17,
        4.2,
        0.1,
        (5.8, 5.0, 4.2),
        ("Wow I did not expect that", "Really is that true", "No way you did it"),
    ),
    "fear": EmotionStyle(
        1.35,
        0.12,
        -24,
        5.0,
        0.45,
        (5.5, 2.2, 2.0),
        ("Please do not hurt me", "I am scared of the dark", "Something is out there"),
    ),
    "disgust": EmotionStyle(
        0.95,
        0.15,
        -20,
        3.0,
        0.3,
        (4.0, 1.8, 4.6),
        ("That smell is revolting", "This food is gross", "How disgusting"),
    ),
    "contempt": EmotionStyle(
        0.9,
        0.2,
        -21,
        3.4,
        0.2,
        (3.6, 2.4, 5.6),
        ("As if you would understand", "How pathetic of them", "You call that effort"),
    ),
    "neutral": EmotionStyle(
        1.0,
        0.06,
        -22,
        3.6,
        0.15,
        (3.8, 4.0, 4.0),
        ("The meeting is at noon", "I parked the car outside", "The report is on the desk"),
    ),
}
NEUTRAL_SENTENCE_SHARE = 0.2
"""Share of clips whose transcript is an emotion-neutral sentence, so text alone cannot be perfect."""

VOWEL_FORMANTS = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (660, 1720))


def _formant_filter(source: np.ndarray, formants: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Colour a source with two resonances (a crude vowel) by FFT-domain gain."""
    spectrum = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(len(source), 1 / SAMPLE_RATE_HZ)
    gain = np.full_like(freqs, 0.05)
    for centre in formants:
        centre = centre * rng.uniform(0.92, 1.08)
        gain += 1.0 / (1.0 + ((freqs - centre) / 90.0) ** 2)
    return np.fft.irfft(spectrum * gain, n=len(source))


def synthesize_clip(emotion: str, pitch_scale: float, rng: np.random.Generator) -> np.ndarray:
    """One utterance of ``emotion`` by a speaker with ``pitch_scale``: float32 at 16 kHz."""
    style = STYLES[emotion]
    duration = rng.uniform(1.4, 2.8)
    n_syllables = max(2, round(duration * style.syllables_per_s * rng.uniform(0.85, 1.15)))
    base_f0 = 220.0 * pitch_scale * style.pitch_scale * rng.uniform(0.93, 1.07)
    pieces = [np.zeros(int(0.12 * SAMPLE_RATE_HZ))]
    for index in range(n_syllables):
        length = int(SAMPLE_RATE_HZ * duration / n_syllables * rng.uniform(0.55, 0.8))
        gap = int(SAMPLE_RATE_HZ * duration / n_syllables) - length
        t = np.arange(length) / SAMPLE_RATE_HZ
        contour = 1 + style.pitch_swing * np.sin(np.pi * (index / n_syllables + t / t[-1]) + rng.uniform(0, np.pi))
        f0 = base_f0 * contour * (1 + 0.01 * rng.standard_normal(length).cumsum() / np.sqrt(length))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
        harmonics = sum(np.sin(k * phase) / k for k in range(1, 25) if k * f0.max() < SAMPLE_RATE_HZ / 2)
        source = harmonics + style.breathiness * rng.standard_normal(length)
        voiced = _formant_filter(source, VOWEL_FORMANTS[rng.integers(len(VOWEL_FORMANTS))], rng)
        envelope = np.abs(np.sin(np.pi * t / t[-1])) ** 0.6
        pieces += [voiced * envelope, 0.003 * rng.standard_normal(max(gap, 0))]
    pieces.append(np.zeros(int(0.12 * SAMPLE_RATE_HZ)))
    wave = np.concatenate(pieces)
    level = style.level_dbfs + rng.uniform(-2.5, 2.5)
    rms = np.sqrt(np.mean(wave**2))
    wave = wave / rms * 10 ** (level / 20)
    return np.clip(wave, -1, 1).astype(np.float32)


def _transcript(emotion: str, rng: np.random.Generator) -> str:
    if rng.random() < NEUTRAL_SENTENCE_SHARE:
        return str(rng.choice(STYLES["neutral"].sentences))
    return str(rng.choice(STYLES[emotion].sentences))


def write_demo_corpus(root: Path, seed: int = 7) -> Path:
    """Write ``root/manifest.csv`` and ``root/audio/*.wav`` (idempotent: an existing corpus is left as it is)."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return manifest
    rng = np.random.default_rng(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for speaker_id, gender, pitch_scale in SPEAKERS:
        for emotion in EMOTIONS:
            style = STYLES[emotion]
            for take in range(CLIPS_PER_SPEAKER_AND_EMOTION):
                utterance_id = f"demo_{speaker_id}_{emotion}_{take}"
                sf.write(
                    audio_dir / f"{utterance_id}.wav",
                    synthesize_clip(emotion, pitch_scale, rng),
                    SAMPLE_RATE_HZ,
                )
                arousal, valence, dominance = (round(v + rng.normal(0, 0.4), 2) for v in style.attributes)
                rows.append(
                    [
                        utterance_id,
                        f"audio/{utterance_id}.wav",
                        emotion,
                        _transcript(emotion, rng),
                        speaker_id,
                        gender,
                        arousal,
                        valence,
                        dominance,
                    ]
                )
    rows += _bad_inputs(audio_dir, rng)
    header = [
        "utterance_id",
        "path",
        "emotion",
        "transcript",
        "speaker_id",
        "gender",
        "arousal",
        "valence",
        "dominance",
    ]
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    tmp.rename(manifest)
    return manifest


def _bad_inputs(audio_dir: Path, rng: np.random.Generator) -> list[list]:
    """Manifest rows for inputs the pipeline must reject, each with a different reason."""
    (audio_dir / "bad_empty.wav").write_bytes(b"")
    sf.write(audio_dir / "bad_short.wav", 0.1 * rng.standard_normal(3200).astype(np.float32), SAMPLE_RATE_HZ)
    sf.write(audio_dir / "bad_silent.wav", np.zeros(2 * SAMPLE_RATE_HZ, dtype=np.float32), SAMPLE_RATE_HZ)
    (audio_dir / "bad_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    first = f"demo_{SPEAKERS[0][0]}_{EMOTIONS[0]}_0"

    def bad(uid: str, path: str) -> list:
        return [uid, path, "neutral", "The meeting is at noon", "spk1", "female", "", "", ""]

    return [
        bad("bad_empty", "audio/bad_empty.wav"),
        bad("bad_short", "audio/bad_short.wav"),
        bad("bad_silent", "audio/bad_silent.wav"),
        bad("bad_corrupt", "audio/bad_corrupt.wav"),
        bad("bad_escape", "../outside.wav"),
        bad(first, f"audio/{first}.wav"),
    ]


def write_demo_episode(
    manifest: Path, path: Path, speakers: tuple[str, ...] = ("spk5", "spk6"), turns: int = 2, clips_per_turn: int = 3
) -> Path:
    """A short podcast-like episode at ``path`` (16 kHz mono WAV) from the corpus's clips of ``speakers``: they take
    ``turns`` turns each of ``clips_per_turn`` clips (0.5 s apart, 2.5 s between turns), with a WebVTT sidecar of
    the clips' transcripts beside it, so the inbox needs no ASR. Both files are written under temporary names and
    renamed, sidecar first: an inbox watching ``path``'s folder never sees half an episode."""
    with open(manifest, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["speaker_id"] in speakers]
    queues = {speaker: [row for row in rows if row["speaker_id"] == speaker] for speaker in speakers}
    parts, cues, position = [np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)], [], SAMPLE_RATE_HZ
    for turn in range(turns):
        for speaker in speakers:
            for row in queues[speaker][turn * clips_per_turn : (turn + 1) * clips_per_turn]:
                wave, _ = sf.read(manifest.parent / row["path"], dtype="float32")
                cues.append((position / SAMPLE_RATE_HZ, (position + len(wave)) / SAMPLE_RATE_HZ, row["transcript"]))
                parts += [wave, np.zeros(SAMPLE_RATE_HZ // 2, dtype=np.float32)]
                position += len(wave) + SAMPLE_RATE_HZ // 2
            parts.append(np.zeros(5 * SAMPLE_RATE_HZ // 2, dtype=np.float32))
            position += 5 * SAMPLE_RATE_HZ // 2
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_suffix(".vtt")
    staged_sidecar = sidecar.with_name(f".{sidecar.name}.partial")
    staged_sidecar.write_text(
        "WEBVTT\n\n" + "\n".join(f"{_stamp(start)} --> {_stamp(end)}\n{text}\n" for start, end, text in cues)
    )
    staged_sidecar.rename(sidecar)
    staged = path.with_name(f".{path.name}.partial")
    sf.write(staged, np.concatenate(parts), SAMPLE_RATE_HZ, format="WAV")
    staged.rename(path)
    return path


def _stamp(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"00:{int(minutes):02d}:{rest:06.3f}"
