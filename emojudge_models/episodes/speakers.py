"""Offline diarization of an episode: Resemblyzer voice vectors, clustered; segments never straddle two speakers.

Resemblyzer's own ``preprocess_wav`` normalises loudness and then cuts every pause it finds with webrtcvad (mode 3).
On segments Silero has already cut to speech, that trim removed 3-12% of the audio on average (up to 37% of a
segment) on the AMI excerpts and lowered clustering: frame ARI with the speaker count, mean of seven excerpts with
1-4 s segments, 0.39 with loudness normalisation alone against 0.32 with the full preprocessing (threshold 0.30:
0.46 against 0.36). So segments get the loudness normalisation alone.

:func:`segment_and_diarize` is the episode path, in two passes:

1. The VAD's speech regions, split to at most ``max_s``, are embedded and clustered, and short pieces are merged
   only with a neighbour of the same cluster (``segment.merge_pieces``) whose loudness and pitch agree
   (``segment.evidence_groups``: one emotion per segment). Merging first and embedding after, a short
   clip merged across a turn change put two voices in one segment: on eight 5-minute RAVDESS-built episodes (four
   or five actors each) one segment in five did, which capped the frame ARI of a perfect labelling at 0.80.
2. Each stretch merged by speaker alone gets the duration-weighted mean of its pieces' vectors (no second embedding
   pass), and the stretches are clustered again: longer stretches of speech give steadier vectors than the pieces.
   The episode's segments (merged by speaker and emotion evidence, so within those stretches) take the speaker and
   vector of the stretch holding their midpoint: splitting by emotion evidence then costs the speakers nothing (on
   the bench's 32 episodes frame ARI 0.736 with the vectors of the shorter segments, 0.767 this way).

Clustering (:func:`cluster_speakers`), from 30 vectors up: the vectors minus the episode's mean vector (what every
voice of a recording shares: channel, room, codec), re-normalised, then average-linkage agglomerative clustering
with cosine distance, cut at the hinted count or at :data:`CENTERED_DISTANCE_THRESHOLD` (1.0: clusters merge while
their members are, on average, positively correlated once the episode's mean voice is out), the count kept within
the hinted bounds (an episode's given count goes through :func:`cluster_to_count`, which keeps emotional outliers
from taking a speaker's place); an episode whose vectors are all alike (mean pairwise cosine at least
:data:`ONE_VOICE_SIMILARITY`) is one voice. Chosen on ``bench/bench_episodes.py``'s two speaker-grouped folds of
RAVDESS-built episodes (32 of 2 minutes, 2-5 actors, one emotion per turn or per clip; bench/RESULTS.md): the
spectral rule used before (pruned cosine affinity, count at the largest eigengap of its Laplacian; Wang et al.,
ICASSP 2018) found the exact count on 22% and was within one on 38%, frame ARI 0.709; this rule 34%, 81% and 0.769
(47% exact once speakers with under :data:`MIN_SPEECH_SHARE` of the speech join the nearest voice), and its
threshold was the best of 0.6-1.1 on each fold alone. Acted emotion moves Resemblyzer vectors of one voice far apart
(centroids of one actor's high- and low-arousal speech: cosine from 0.63, median 0.85; of two actors: 0.50-0.88),
which the eigengap read as extra speakers and average linkage on centred vectors tolerates better. Under 30 vectors
(a short excerpt) neither an episode mean nor a one-voice test means much, and the rule is the same average linkage
on the vectors as they are, cut at the hinted count or at :data:`DEFAULT_DISTANCE_THRESHOLD`; and an episode of
under 30 pieces is merged without speakers into stretches, each embedded whole and clustered once, whose speaker its
segments (split further by emotion evidence) take: on an 82-s three-actor episode, 27 pieces, the average-linkage
threshold splits short pieces of one voice apart (frame ARI 0.57 with the two passes, 1.0 with one), and on the AMI
excerpts with 1-4 s segments pooled piece vectors lowered the mean ARI from 0.39 to 0.33.
Speakers are numbered by first appearance: ``<episode>:S1`` speaks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from resemblyzer import VoiceEncoder
from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram
from resemblyzer.hparams import audio_norm_target_dBFS
from sklearn.cluster import AgglomerativeClustering

from emojudge_models.episodes.segment import (
    DEFAULT_MAX_GAP_S,
    DEFAULT_MAX_S,
    DEFAULT_MIN_S,
    Segment,
    cores_up_to,
    cut,
    evidence_groups,
    merge_pieces,
    speech_regions,
    split_regions,
    with_pause_context,
)
from emojudge_models.loaded_models import kept_loaded
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DEFAULT_DISTANCE_THRESHOLD = 0.3
"""Cosine distance (average linkage) above which two clusters are different speakers, when no count is given.

Measured (frame-level ARI on single-speaker reference frames): a RAVDESS-built 3-speaker episode 1.0 at 0.25-0.30,
0.55 at 0.35, 0.0 at 0.40; the ten AMI excerpts (1-4 s segments) mean 0.43 at 0.25, 0.52 at 0.30, 0.37 at 0.35."""
MIN_CENTERED = 30
"""From this many vectors up, clustering is on episode-centred vectors (module doc); below, on the vectors as given."""
CENTERED_DISTANCE_THRESHOLD = 1.0
"""Cosine distance (average linkage) between clusters of episode-centred vectors above which they are different
speakers, when no count is given (chosen by bench_episodes.py's folds; module doc)."""
ONE_VOICE_SIMILARITY = 0.65
"""Mean pairwise cosine of an episode's vectors (as embedded, not centred) from which it is one voice. Measured on
the bench's RAVDESS-built episodes: one actor's pieces 0.59-0.82 (median 0.70), two to five actors at most 0.61."""
MIN_SPEECH_SHARE = 0.03
"""A speaker found with less than this share of an episode's speech (30 pieces or more, no count given) joins the
nearest other voice: on the bench's 32 episodes such clusters were parts of one actor's voice (emotional outliers),
and absorbing them raised the exact count from 34% to 47% (each fold alone: 31% -> 44%, 38% -> 50%) at the same frame
ARI (0.767). The price: a real speaker with under 3% of the speech (a one-line guest in an hour) is attributed to the
nearest voice; ``--speakers`` or ``--min-speakers`` keeps them."""
MAX_LINKAGE = 2500
"""Clustering runs on at most this many vectors (evenly spaced over the episode); the rest join the nearest cluster
mean. Its distance matrix grows with the square: 2,500 vectors (about 80 minutes of speech pieces) are 50 MB."""
DEFAULT_MAX_SPEAKERS = 10
"""Upper bound of the estimated speaker count when no hint is given."""
MIN_EMBED_S = 0.5
"""Segments shorter than this are zero-padded to it before embedding (Resemblyzer needs some frames)."""
PARTIALS_PER_BATCH = 256
"""Resemblyzer partials (1.6 s each) sent through the voice encoder's LSTM at once (about 6.5 MB of mel frames)."""
MAX_VOICE_THREADS = 4
"""The voice encoder's torch threads when not given: the cores, at most this many."""


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


@kept_loaded()
def voice_encoder() -> VoiceEncoder:
    """The CPU voice encoder, loaded once per process from the weights inside the resemblyzer wheel."""
    return VoiceEncoder("cpu", verbose=False)


def voice_vectors(
    wave: np.ndarray, segments: Sequence[Segment], encoder: VoiceEncoder | None = None, threads: int | None = None
) -> np.ndarray:
    """Unit-length 256-d voice vectors of each segment of a 16 kHz mono episode wave, shape (segments, 256).

    Each vector is Resemblyzer's ``embed_utterance`` of the segment (the normalised mean of its 1.6-s partials), but
    the partials of many segments go through the LSTM together, :data:`PARTIALS_PER_BATCH` at a time, on ``threads``
    torch threads (default: the cores, at most :data:`MAX_VOICE_THREADS`; restored afterwards). One segment per call
    kept the LSTM's matrices small: on the built hour's first 15 minutes (301 pieces, 2-vCPU AMD EPYC) 5.3 s one by
    one on one thread, 2.3 s batched on one thread, 1.6 s batched on two, the vectors equal within 3e-7
    (bench/RESULTS.md). Per call, two threads had measured 12x slower than one on a loaded 2-core machine.
    """
    encoder = encoder or voice_encoder()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or cores_up_to(MAX_VOICE_THREADS))
    try:
        vectors = _embed(wave, segments, encoder)
    finally:
        torch.set_num_threads(previous_threads)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _embed(wave: np.ndarray, segments: Sequence[Segment], encoder: VoiceEncoder) -> np.ndarray:
    """Mean partial embedding of each segment (loudness-normalised, short ones zero-padded; Resemblyzer's slicing:
    1.3 partials per second, a last partial kept when it covers 75%)."""
    sums = np.zeros((len(segments), 256), dtype=np.float64)
    counts = np.zeros(len(segments), dtype=np.int64)
    batch: list[np.ndarray] = []
    owners: list[int] = []

    def forward() -> None:
        with torch.no_grad():
            partials = encoder(torch.from_numpy(np.stack(batch))).numpy()
        np.add.at(sums, owners, partials)
        np.add.at(counts, owners, 1)
        batch.clear()
        owners.clear()

    min_len = round(MIN_EMBED_S * SAMPLE_RATE_HZ)
    for row, segment in enumerate(segments):
        audio = np.asarray(cut(wave, segment), dtype=np.float32)
        if len(audio) < min_len:
            audio = np.pad(audio, (0, min_len - len(audio)))
        if np.any(audio):
            audio = normalize_volume(audio, audio_norm_target_dBFS, increase_only=True)
        wav_slices, mel_slices = encoder.compute_partial_slices(len(audio), rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop >= len(audio):
            audio = np.pad(audio, (0, wav_slices[-1].stop - len(audio)))
        mel = wav_to_mel_spectrogram(audio)
        batch.extend(mel[part] for part in mel_slices)
        owners.extend([row] * len(mel_slices))
        if len(batch) >= PARTIALS_PER_BATCH:
            forward()
    if batch:
        forward()
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def centered(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors minus their mean, re-normalised: what all voices of one recording share is taken out."""
    shifted = vectors - vectors.mean(axis=0, keepdims=True)
    return shifted / np.maximum(np.linalg.norm(shifted, axis=1, keepdims=True), 1e-12)


def is_one_voice(vectors: np.ndarray) -> bool:
    """Whether unit ``vectors`` are all alike: their mean pairwise cosine is at least :data:`ONE_VOICE_SIMILARITY`."""
    count = len(vectors)
    total = vectors.astype(np.float64).sum(axis=0)
    return (float(total @ total) - count) / (count * (count - 1)) >= ONE_VOICE_SIMILARITY


def cluster_speakers(
    vectors: np.ndarray,
    n_speakers: int | None = None,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
    max_speakers: int | None = None,
    min_speakers: int | None = None,
    centred: bool | None = None,
) -> np.ndarray:
    """Cluster label per vector (0, 1, ... numbered by first appearance); ``n_speakers`` overrides the estimate, which
    otherwise lies in ``[min_speakers, max_speakers]`` (default 1 and :data:`DEFAULT_MAX_SPEAKERS`, or the minimum).
    ``centred``: cluster episode-centred vectors (default: from :data:`MIN_CENTERED` vectors up; module doc)."""
    hint = SpeakerHint(n_speakers, min_speakers, max_speakers)
    low = hint.minimum or 1
    high = hint.maximum or max(DEFAULT_MAX_SPEAKERS, low)
    count = len(vectors)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1 or n_speakers == 1 or high == 1:
        return np.zeros(count, dtype=np.int64)
    if not (count >= MIN_CENTERED if centred is None else centred):
        raw = _linkage(vectors, n_speakers, distance_threshold, low, high)
    elif n_speakers is None and low == 1 and is_one_voice(vectors):
        raw = np.zeros(count, dtype=np.int64)
    else:
        raw = _linkage(centered(vectors), n_speakers, CENTERED_DISTANCE_THRESHOLD, low, high)
    order: dict[int, int] = {}
    for label in raw:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in raw], dtype=np.int64)


def _linkage(vectors: np.ndarray, n_speakers: int | None, threshold: float, low: int, high: int) -> np.ndarray:
    """Average-linkage cosine clusters of unit ``vectors``: ``n_speakers`` of them, or cut at ``threshold`` and moved
    to the nearer of ``low``/``high`` when the cut lies outside them; beyond :data:`MAX_LINKAGE` vectors, fitted on an
    even subsample."""
    sample = np.linspace(0, len(vectors) - 1, min(len(vectors), MAX_LINKAGE)).round().astype(int)
    fit = vectors[sample]

    def cut(clusters: int | None) -> np.ndarray:
        model = AgglomerativeClustering(
            n_clusters=clusters,
            distance_threshold=None if clusters else threshold,
            metric="cosine",
            linkage="average",
        )
        return model.fit_predict(fit)

    if n_speakers is not None:
        fitted = cut(min(n_speakers, len(fit) - 1))
    else:
        fitted = cut(None)
        found = len(np.unique(fitted))
        if not low <= found <= high:
            fitted = cut(min(max(found, low), high, len(fit) - 1))
    if len(sample) == len(vectors):
        return fitted
    found_labels = np.unique(fitted)
    means = np.stack([fit[fitted == label].mean(axis=0) for label in found_labels])
    return found_labels[np.argmax(vectors @ means.T, axis=1)]


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
    regions: list[tuple[int, int]] | None = None,
) -> tuple[list[Segment], Diarization]:
    """The episode's segments and their speakers, by the two passes of the module doc (no segment spans two
    speakers; each keeps up to ``segment.PAUSE_CONTEXT_S`` of the pauses around it); ``n_speakers`` is the count,
    else it is estimated within ``[min_speakers, max_speakers]`` (see :func:`cluster_speakers`). ``regions``: the
    VAD's speech regions when already found (:class:`~segment.StreamedSpeechRegions`)."""
    bounds = {"max_speakers": max_speakers, "min_speakers": min_speakers}
    pieces = split_regions(wave, speech_regions(wave) if regions is None else regions, min_s, max_s)
    if len(pieces) < MIN_CENTERED:
        turns = merge_pieces(pieces, min_s, max_s, max_gap_s)
        turn_vectors = voice_vectors(wave, turns, encoder)
        turn_labels = cluster_speakers(turn_vectors, n_speakers, **bounds)
        piece_labels = None
    else:
        spans = [Segment(start / SAMPLE_RATE_HZ, end / SAMPLE_RATE_HZ) for start, end in pieces]
        piece_vectors = voice_vectors(wave, spans, encoder)
        piece_durations = np.array([end - start for start, end in pieces], dtype=np.float64)
        piece_labels = (
            cluster_speakers(piece_vectors, centred=True, **bounds)
            if n_speakers is None
            else cluster_to_count(piece_vectors, piece_durations, n_speakers)
        )
        turns = merge_pieces(pieces, min_s, max_s, max_gap_s, speakers=piece_labels)
        turn_vectors = _pooled(pieces, piece_vectors, turns)
        durations = np.array([turn.duration_s for turn in turns])
        turn_labels = _second_pass(turn_vectors, durations, piece_labels, n_speakers, min_speakers, max_speakers)
    merged = merge_pieces(pieces, min_s, max_s, max_gap_s, speakers=evidence_groups(wave, pieces, piece_labels))
    segments = with_pause_context(merged, len(wave) / SAMPLE_RATE_HZ)
    ends = np.array([turn.end_s for turn in turns])
    middles = np.array([(segment.start_s + segment.end_s) / 2 for segment in merged])
    parent = np.minimum(np.searchsorted(ends, middles), len(turns) - 1)
    return segments, _diarization(episode, turn_vectors[parent], turn_labels[parent])


def _second_pass(
    vectors: np.ndarray,
    durations: np.ndarray,
    piece_labels: np.ndarray,
    n_speakers: int | None,
    min_speakers: int | None,
    max_speakers: int | None,
) -> np.ndarray:
    """Speaker labels of the speaker-merged stretches: one voice when the pieces said so (pooled vectors are alike by
    construction, so the one-voice test is not asked again), else clustered anew, at least two unless hinted, and
    without speakers of under :data:`MIN_SPEECH_SHARE` of the speech unless a count is given."""
    if not piece_labels.any():
        return np.zeros(len(vectors), dtype=np.int64)
    if n_speakers is not None:
        return cluster_to_count(vectors, durations, n_speakers)
    at_least_two = max(min_speakers or 1, 2)
    labels = cluster_speakers(vectors, centred=True, max_speakers=max_speakers, min_speakers=at_least_two)
    return absorb_small_speakers(vectors, labels, durations, min_speakers or 1)


def cluster_to_count(vectors: np.ndarray, durations: np.ndarray, n_speakers: int) -> np.ndarray:
    """Exactly ``n_speakers`` labels for episode vectors (30 or more, clustered centred) when the count is given.

    Cut straight at the count, average linkage spends clusters on emotional outliers of one voice (a few pieces
    far from the rest) and merges two real voices to keep the count. So the tree is cut at the count, then one
    cluster finer at a time (up to :data:`DEFAULT_MAX_SPEAKERS` more) until ``n_speakers`` clusters each hold
    :data:`MIN_SPEECH_SHARE` of the speech, and the smaller ones join the nearest of those (the rule the estimated
    count follows, :func:`absorb_small_speakers`)."""
    if n_speakers <= 1 or len(vectors) <= n_speakers:
        return cluster_speakers(vectors, n_speakers, centred=True)
    total = float(durations.sum()) or 1.0
    for clusters in range(n_speakers, min(n_speakers + DEFAULT_MAX_SPEAKERS, len(vectors) - 1) + 1):
        labels = cluster_speakers(vectors, clusters, centred=True)
        shares = np.bincount(labels, weights=durations) / total
        if int((shares >= MIN_SPEECH_SHARE).sum()) >= n_speakers:
            break
    labels = absorb_small_speakers(vectors, labels, durations, n_speakers)
    if len(np.unique(labels)) != n_speakers:  # a finer cut of a subsampled tree split two large voices at once
        return cluster_speakers(vectors, n_speakers, centred=True)
    return labels


def absorb_small_speakers(vectors: np.ndarray, labels: np.ndarray, durations: np.ndarray, keep: int = 1) -> np.ndarray:
    """``labels`` with each speaker holding under :data:`MIN_SPEECH_SHARE` of ``durations`` moved, smallest first, to
    the speaker whose centred mean vector is nearest, while more than ``keep`` speakers remain; renumbered by first
    appearance."""
    labels = labels.copy()
    shifted = centered(vectors)
    while len(found := np.unique(labels)) > keep:
        shares = np.array([durations[labels == label].sum() for label in found]) / durations.sum()
        if shares.min() >= MIN_SPEECH_SHARE:
            break
        small = found[int(np.argmin(shares))]
        means = {label: shifted[labels == label].mean(axis=0) for label in found}
        others = [label for label in found if label != small]
        similarity = [means[small] @ means[o] / max(float(np.linalg.norm(means[o])), 1e-12) for o in others]
        labels[labels == small] = others[int(np.argmax(similarity))]
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(label), len(order)) for label in labels], dtype=np.int64)


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
