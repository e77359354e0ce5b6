"""Offline diarization of an episode: Resemblyzer voice vectors, clustered; segments never straddle two speakers.

Resemblyzer's own ``preprocess_wav`` normalises loudness and then cuts every pause it finds with webrtcvad (mode 3).
On segments Silero has already cut to speech, that trim removed 3-12% of the audio on average (up to 37% of a
segment) on the AMI excerpts and lowered clustering: frame ARI with the speaker count, mean of seven excerpts with
1-4 s segments, 0.39 with loudness normalisation alone against 0.32 with the full preprocessing (threshold 0.30:
0.46 against 0.36). So segments get the loudness normalisation alone.

:func:`segment_and_diarize` is the episode path, in two passes:

1. The VAD's speech regions, split to at most ``max_s``, are embedded and clustered, and short pieces are merged
   only with a neighbour of the same cluster (``segment.merge_pieces``). Merging first and embedding after, a short
   clip merged across a turn change put two voices in one segment: on eight 5-minute RAVDESS-built episodes (four
   or five actors each) one segment in five did, which capped the frame ARI of a perfect labelling at 0.80.
2. Each segment's vector is the duration-weighted mean of its pieces' vectors (no second embedding pass), and the
   segments are clustered again: longer stretches of speech give steadier vectors than the pieces.

Clustering (:func:`cluster_speakers`), from 30 vectors up: the vectors minus the episode's mean vector (what every
voice of a recording shares: channel, room, codec), then spectral clustering of a pruned cosine affinity (each row
keeps its 20% strongest links; symmetrised, diffused, row-normalised: Wang et al., "Speaker diarization with LSTM",
ICASSP 2018), with the speaker count from the hint or from the largest gap among the smallest eigenvalues of the
affinity's normalised Laplacian (at most :data:`DEFAULT_MAX_SPEAKERS`). Measured on those eight episodes (frame ARI
with the count): average-linkage clustering of merged segments 0.46; the mean removed 0.63; this two-pass rule 0.78
(0.82 with the estimated count). Under 30 vectors (a short excerpt) neither an episode mean nor a pruned affinity
means much, and the rule is average-linkage agglomerative clustering with cosine distance, cut at the hinted count
or at :data:`DEFAULT_DISTANCE_THRESHOLD`; and an episode of under 30 pieces is merged without speakers and clustered
once, by segment (on an 82-s three-actor episode, 27 pieces, the average-linkage threshold splits short pieces of one
voice apart: frame ARI 0.57 with the two passes, 1.0 with one), each segment embedded whole (on the AMI excerpts
with 1-4 s segments, pooled piece vectors lowered the mean ARI from 0.39 to 0.33). Speakers are numbered by first
appearance: ``<episode>:S1`` speaks first.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from resemblyzer import VoiceEncoder
from resemblyzer.audio import normalize_volume
from resemblyzer.hparams import audio_norm_target_dBFS
from scipy.linalg import eigh
from sklearn.cluster import AgglomerativeClustering, SpectralClustering

from emojudge_models.episodes.segment import (
    DEFAULT_MAX_GAP_S,
    DEFAULT_MAX_S,
    DEFAULT_MIN_S,
    Segment,
    cut,
    merge_pieces,
    speech_regions,
    split_regions,
)
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DEFAULT_DISTANCE_THRESHOLD = 0.3
"""Cosine distance (average linkage) above which two clusters are different speakers, when no count is given.

Measured (frame-level ARI on single-speaker reference frames): a RAVDESS-built 3-speaker episode 1.0 at 0.25-0.30,
0.55 at 0.35, 0.0 at 0.40; the ten AMI excerpts (1-4 s segments) mean 0.43 at 0.25, 0.52 at 0.30, 0.37 at 0.35."""
MIN_SPECTRAL = 30
"""From this many vectors up, clustering is spectral on mean-removed vectors; below, average-linkage (module doc)."""
AFFINITY_KEEP = 0.2
"""Share of each row's strongest affinities kept before symmetrising (the rest are scaled by 0.01)."""
MAX_AFFINITY = 2500
"""Spectral clustering runs on at most this many vectors (evenly spaced over the episode); the rest join the nearest
cluster mean. Its dense matrices grow with the square: 7,500 vectors (about 4 h of speech pieces) measured 2.4 GB
and 40 s, 2,500 a few hundred MB and a few seconds."""
DEFAULT_MAX_SPEAKERS = 10
"""Upper bound of the estimated speaker count when no hint is given."""
MIN_EMBED_S = 0.5
"""Segments shorter than this are zero-padded to it before embedding (Resemblyzer needs some frames)."""


@dataclass(frozen=True)
class SpeakerHint:
    """What the user knows of an episode's speakers (``emojudge inbox add --speakers/--min-speakers/--max-speakers``):
    the count, or bounds the estimated count is kept within (each bound optional, as pyannote's hints)."""

    count: int | None = None
    minimum: int | None = None
    maximum: int | None = None

    def __post_init__(self) -> None:
        for option, value in (("speakers", self.count), ("min-speakers", self.minimum), ("max-speakers", self.maximum)):
            if value is not None and value < 1:
                raise ValueError(f"--{option} must be at least 1, got {value}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"--min-speakers {self.minimum} is above --max-speakers {self.maximum}")
        if self.count is not None and not (self.minimum or 1) <= self.count <= (self.maximum or self.count):
            raise ValueError(f"--speakers {self.count} lies outside --min-speakers/--max-speakers")


NO_HINT = SpeakerHint()
"""Nothing known of an episode's speakers: the count is estimated within 1 and :data:`DEFAULT_MAX_SPEAKERS`."""


@dataclass(frozen=True)
class Diarization:
    """Who spoke each segment, and each speaker's voice centroid (for matching speakers across episodes)."""

    speaker_ids: list[str]
    """One id per segment, in segment order: ``<episode>:S<k>``, k counted by first appearance."""
    centroids: dict[str, np.ndarray]
    """Mean of the speaker's unit-length segment vectors (256 float32; not re-normalised, so its norm shows spread)."""
    vectors: np.ndarray
    """The unit-length segment vectors, shape (segments, 256)."""


@functools.cache
def voice_encoder() -> VoiceEncoder:
    """The CPU voice encoder, loaded once per process from the weights inside the resemblyzer wheel."""
    return VoiceEncoder("cpu", verbose=False)


def voice_vectors(
    wave: np.ndarray, segments: Sequence[Segment], encoder: VoiceEncoder | None = None, threads: int = 1
) -> np.ndarray:
    """Unit-length 256-d voice vectors of each segment of a 16 kHz mono episode wave, shape (segments, 256).

    Torch runs on ``threads`` threads while embedding (restored afterwards): the encoder is small, and on a shared
    2-core machine two threads measured 12x slower than one (3.4 s against 0.27 s per 6 s segment).
    """
    encoder = encoder or voice_encoder()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        vectors = _embed(wave, segments, encoder)
    finally:
        torch.set_num_threads(previous_threads)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _embed(wave: np.ndarray, segments: Sequence[Segment], encoder: VoiceEncoder) -> np.ndarray:
    """Raw Resemblyzer vectors of each segment (loudness-normalised, short ones zero-padded)."""
    vectors = np.zeros((len(segments), 256), dtype=np.float32)
    min_len = round(MIN_EMBED_S * SAMPLE_RATE_HZ)
    for row, segment in enumerate(segments):
        audio = np.asarray(cut(wave, segment), dtype=np.float32)
        if len(audio) < min_len:
            audio = np.pad(audio, (0, min_len - len(audio)))
        if np.any(audio):
            audio = normalize_volume(audio, audio_norm_target_dBFS, increase_only=True)
        vectors[row] = encoder.embed_utterance(audio)
    return vectors


def centered(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors minus their mean, re-normalised: what all voices of one recording share is taken out."""
    shifted = vectors - vectors.mean(axis=0, keepdims=True)
    return shifted / np.maximum(np.linalg.norm(shifted, axis=1, keepdims=True), 1e-12)


def refined_affinity(vectors: np.ndarray, keep: float = AFFINITY_KEEP) -> np.ndarray:
    """Symmetric float32 affinity of unit vectors: cosine, each row pruned to its ``keep`` strongest, diffused."""
    affinity = np.clip(vectors @ vectors.T, 0.0, None).astype(np.float32)
    np.fill_diagonal(affinity, 0.0)
    np.fill_diagonal(affinity, affinity.max(axis=1))
    cutoff = np.quantile(affinity, 1.0 - keep, axis=1, keepdims=True)
    affinity = np.where(affinity < cutoff, affinity * 0.01, affinity)
    affinity = np.maximum(affinity, affinity.T)
    affinity = affinity @ affinity.T
    affinity /= np.maximum(affinity.max(axis=1, keepdims=True), 1e-12)
    return (affinity + affinity.T) / 2 + 1e-9


def estimate_speaker_count(
    affinity: np.ndarray, max_speakers: int = DEFAULT_MAX_SPEAKERS, min_speakers: int = 1
) -> int:
    """The count in ``[min_speakers, max_speakers]`` at the largest gap among the smallest eigenvalues of the
    normalised Laplacian of ``affinity``."""
    top = min(max_speakers, len(affinity) - 1)
    low = min(max(min_speakers, 1), top)
    if top < 2:
        return max(top, 1)
    scale = 1.0 / np.sqrt(affinity.sum(axis=1))
    laplacian = np.eye(len(affinity), dtype=np.float64) - affinity * scale[:, None] * scale[None, :]
    eigenvalues = eigh(laplacian, eigvals_only=True, subset_by_index=[0, top])
    return int(np.argmax(np.diff(eigenvalues)[low - 1 :])) + low


def cluster_speakers(
    vectors: np.ndarray,
    n_speakers: int | None = None,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
    max_speakers: int | None = None,
    min_speakers: int | None = None,
) -> np.ndarray:
    """Cluster label per vector (0, 1, ... numbered by first appearance); ``n_speakers`` overrides the estimate, which
    otherwise lies in ``[min_speakers, max_speakers]`` (default 1 and :data:`DEFAULT_MAX_SPEAKERS`, or the minimum)."""
    hint = SpeakerHint(n_speakers, min_speakers, max_speakers)
    low = hint.minimum or 1
    high = hint.maximum or max(DEFAULT_MAX_SPEAKERS, low)
    count = len(vectors)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1 or n_speakers == 1 or high == 1:
        return np.zeros(count, dtype=np.int64)
    if count >= MIN_SPECTRAL:
        raw = _spectral(centered(vectors), n_speakers, low, high)
    elif n_speakers is not None:
        model = AgglomerativeClustering(n_clusters=min(n_speakers, count), metric="cosine", linkage="average")
        raw = model.fit_predict(vectors)
    else:
        model = AgglomerativeClustering(
            n_clusters=None, distance_threshold=distance_threshold, metric="cosine", linkage="average"
        )
        raw = model.fit_predict(vectors)
        found = len(np.unique(raw))
        if not low <= found <= high:  # the threshold's cut lies outside the hint: cut at the nearer bound instead
            bounded = min(max(found, low), high, count)
            raw = AgglomerativeClustering(n_clusters=bounded, metric="cosine", linkage="average").fit_predict(vectors)
    order: dict[int, int] = {}
    for label in raw:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in raw], dtype=np.int64)


def _spectral(vectors: np.ndarray, n_speakers: int | None, min_speakers: int, max_speakers: int) -> np.ndarray:
    """Spectral labels of (centred) unit vectors; beyond :data:`MAX_AFFINITY`, fitted on an even subsample."""
    sample = np.linspace(0, len(vectors) - 1, min(len(vectors), MAX_AFFINITY)).round().astype(int)
    affinity = refined_affinity(vectors[sample])
    if n_speakers:
        clusters = min(n_speakers, len(sample) - 1)
    else:
        clusters = estimate_speaker_count(affinity, max_speakers, min_speakers)
    if clusters == 1:
        return np.zeros(len(vectors), dtype=np.int64)
    model = SpectralClustering(n_clusters=clusters, affinity="precomputed", assign_labels="discretize", random_state=0)
    fitted = model.fit_predict(affinity)
    if len(sample) == len(vectors):
        return fitted
    found = np.unique(fitted)
    means = np.stack([vectors[sample[fitted == label]].mean(axis=0) for label in found])
    return found[np.argmax(vectors @ means.T, axis=1)]


def diarize(
    episode: str,
    wave: np.ndarray,
    segments: Sequence[Segment],
    n_speakers: int | None = None,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
    encoder: VoiceEncoder | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> Diarization:
    """Speaker ids ``<episode>:S<k>`` for given segments of ``wave`` (one vector each), plus per-speaker centroids."""
    vectors = voice_vectors(wave, segments, encoder)
    labels = cluster_speakers(vectors, n_speakers, distance_threshold, max_speakers, min_speakers)
    return _diarization(episode, vectors, labels)


def segment_and_diarize(
    episode: str,
    wave: np.ndarray,
    min_s: float = DEFAULT_MIN_S,
    max_s: float = DEFAULT_MAX_S,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    n_speakers: int | None = None,
    encoder: VoiceEncoder | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> tuple[list[Segment], Diarization]:
    """The episode's segments and their speakers, by the two passes of the module doc (no segment spans two);
    ``n_speakers`` is the count, else it is estimated within ``[min_speakers, max_speakers]`` (see
    :func:`cluster_speakers`)."""
    bounds = {"max_speakers": max_speakers, "min_speakers": min_speakers}
    pieces = split_regions(wave, speech_regions(wave), min_s, max_s)
    if len(pieces) < MIN_SPECTRAL:
        segments = merge_pieces(pieces, min_s, max_s, max_gap_s)
        return segments, diarize(episode, wave, segments, n_speakers, encoder=encoder, **bounds)
    spans = [Segment(start / SAMPLE_RATE_HZ, end / SAMPLE_RATE_HZ) for start, end in pieces]
    piece_vectors = voice_vectors(wave, spans, encoder)
    piece_labels = cluster_speakers(piece_vectors, n_speakers, **bounds)
    segments = merge_pieces(pieces, min_s, max_s, max_gap_s, speakers=piece_labels)
    vectors = _pooled(pieces, piece_vectors, segments)
    return segments, _diarization(episode, vectors, cluster_speakers(vectors, n_speakers, **bounds))


def _pooled(pieces: Sequence[tuple[int, int]], vectors: np.ndarray, segments: Sequence[Segment]) -> np.ndarray:
    """Each segment's unit vector: the duration-weighted mean of the vectors of the pieces it is made of."""
    pooled = np.zeros((len(segments), vectors.shape[1]), dtype=np.float64)
    ends = np.array([round(segment.end_s * SAMPLE_RATE_HZ) for segment in segments])
    for (start, end), vector in zip(pieces, vectors, strict=True):
        pooled[int(np.searchsorted(ends, end))] += vector * (end - start)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _diarization(episode: str, vectors: np.ndarray, labels: np.ndarray) -> Diarization:
    ids = [f"{episode}:S{label + 1}" for label in labels]
    centroids = {
        f"{episode}:S{label + 1}": vectors[labels == label].mean(axis=0).astype(np.float32)
        for label in np.unique(labels)
    }
    return Diarization(speaker_ids=ids, centroids=centroids, vectors=vectors)
