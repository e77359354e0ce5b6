"""Cut a decoded episode into utterance-sized segments: Silero VAD, then merge and split to a length range.

The rule, applied to the VAD's speech regions (never dropping any speech sample the VAD marked):

1. **Split** every region longer than ``max_s`` at its quietest point: the centre of the 100 ms window with the
   lowest mean energy among split points that leave at least ``min_s`` on both sides (or, when ``max_s < 2 * min_s``,
   that leave at most ``max_s`` on both sides); repeat on the pieces until all are at most ``max_s``.
2. **Merge** regions shorter than ``min_s``, shortest first, into the neighbour across the smaller gap, provided the
   gap is at most ``max_gap_s`` and the merged span (gap included) is at most ``max_s``. A short region with no
   such neighbour is **isolated** and kept as a shorter segment rather than dropped or padded with silence.
   For a mixed episode the merge is speaker-aware: the split pieces are diarized first and a short piece merges
   only into a neighbour of the same speaker (``speakers.segment_and_diarize``), so a segment never straddles a
   turn change; a short turn with no same-speaker neighbour stays a short segment.
3. **Emotion evidence** (the mixed-episode path): neighbouring pieces whose loudness differs by more than
   :data:`EVIDENCE_MAX_DB` or whose median pitch differs by more than :data:`EVIDENCE_MAX_SEMITONES` are never
   merged (:func:`evidence_groups`): a change of arousal is a change of emotion, and one segment gets one label.
   Measured on bench_episodes.py's episodes whose emotion changes clip by clip (speakers from the reference): the
   share of segments holding one emotion rose from 0.20 to 0.88 and the ceiling of clip-level F1-macro from 0.43 to
   0.85; with one emotion per turn, purity stayed 1.00 and segments shortened from 4.4 to 2.8 s on average.

4. **Pause context** (the mixed-episode path): each segment is widened into the pauses around it, by up to
   :data:`PAUSE_CONTEXT_S` and at most half of each pause (:func:`with_pause_context`), so segments never overlap
   and hold no more speech than before. Emotion models are trained on corpus clips, which keep their silent margins
   (RAVDESS: about a second around 2 s of speech), and pool their frames over the whole clip: the same held-out clips
   trimmed to their speech scored F1-macro 0.532 instead of 0.757 (bench/RESULTS.md), and episode segments cut to
   the VAD's speech were scored like trimmed clips (figures with and without the context in bench/RESULTS.md).

Segments are addressed by the episode's content hash and their start and end in milliseconds, so the same episode
always yields the same ids and every cache keyed on them survives a rescoring.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import librosa
import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DEFAULT_MIN_S = 2.75
DEFAULT_MAX_S = 11.0
DEFAULT_MAX_GAP_S = 2.0
VAD_CHUNK_S = 600.0
"""The VAD runs on 10-minute pieces of the episode (see :func:`speech_regions`)."""
MAX_EVIDENCE_WORKERS = 2
"""Threads sharing the pitch evidence when not given: the cores, at most this many."""
ENERGY_HOP = SAMPLE_RATE_HZ // 100
"""10 ms hop of the energy curve used to place splits."""
ENERGY_WINDOW_HOPS = 10
"""Energy is averaged over 100 ms windows, so a split lands in a pause, not in a stop consonant."""
EVIDENCE_MAX_DB = 3.0
"""Neighbouring pieces louder or softer than each other by more than this (RMS, dB) are not merged (rule 3)."""
EVIDENCE_MAX_SEMITONES = 2.0
"""Neighbouring pieces whose median pitch differs by more than this many semitones are not merged (rule 3)."""
PITCH_RANGE_HZ = (60.0, 500.0)
"""The YIN pitch search range (speaking voices)."""
PAUSE_CONTEXT_S = 1.0
"""Each segment of a mixed episode keeps up to this much of the pause on either side of it (rule 4)."""


def utterance_vad_options() -> VadOptions:
    """Silero settings for utterances rather than faster-whisper's transcription chunks.

    300 ms of silence ends a region (faster-whisper's default is 2000 ms); regions are padded by 100 ms each side
    (default 400 ms, which would glue turns together); no maximum length (splitting is done here, at pauses); no
    minimum speech length, so the VAD drops nothing it heard.
    """
    return VadOptions(
        threshold=0.5,
        min_speech_duration_ms=0,
        min_silence_duration_ms=300,
        speech_pad_ms=100,
    )


@dataclass(frozen=True)
class Segment:
    """One utterance-sized stretch of an episode, in seconds from the start of the decoded audio."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def start_ms(self) -> int:
        return round(self.start_s * 1000)

    @property
    def end_ms(self) -> int:
        return round(self.end_s * 1000)


def segment_id(episode_sha256: str, start_s: float, end_s: float, channel: int | None = None) -> str:
    """Readable, stable id of a segment: ``<sha[:12]>-<start_ms>-<end_ms>``; ``<sha[:12]>-c<channel>-<start_ms>-...``
    for a segment of one channel (1-based) of a split episode."""
    track = "" if channel is None else f"c{channel}-"
    return f"{episode_sha256[:12]}-{track}{round(start_s * 1000)}-{round(end_s * 1000)}"


def segment_audio_sha256(episode_sha256: str, start_s: float, end_s: float, channel: int | None = None) -> str:
    """The segment's audio identity for the feature, ASR and judgment caches: SHA-256 of ``sha:start_ms:end_ms``
    (``sha:c<channel>:start_ms:end_ms`` for one channel of a split episode: other samples, another identity)."""
    track = "" if channel is None else f"c{channel}:"
    key = f"{episode_sha256}:{track}{round(start_s * 1000)}:{round(end_s * 1000)}"
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def cut(wave: np.ndarray, segment: Segment) -> np.ndarray:
    """The segment's samples (a view into the 16 kHz episode wave, not a copy)."""
    return wave[round(segment.start_s * SAMPLE_RATE_HZ) : round(segment.end_s * SAMPLE_RATE_HZ)]


def speech_regions(
    wave: np.ndarray, vad_options: VadOptions | None = None, chunk_s: float = VAD_CHUNK_S
) -> list[tuple[int, int]]:
    """Silero VAD speech regions of a 16 kHz mono wave as ``(start_sample, end_sample)`` pairs, in order.

    faster-whisper's VAD copies its input twice (padding, then 64-sample context per 512-sample window), so it runs
    here on ``chunk_s`` pieces: extra memory stays near 250 MB (measured) instead of twice the episode (1.8 GB for 4 h).
    A region cut by a chunk boundary is joined again when its two halves are closer than the VAD's minimum silence.
    """
    options = vad_options or utterance_vad_options()
    step = _vad_step(chunk_s)
    pieces = [(offset, _piece_regions(wave, offset, step, options)) for offset in range(0, len(wave), step)]
    return _joined(pieces, options)


class StreamedSpeechRegions:
    """:func:`speech_regions` of a wave still being decoded: each VAD piece runs on a worker thread as soon as the
    decoder has filled it, so the VAD of one piece runs beside the decoding of the next (on two cores the built hour's
    decode and VAD took 13 s one after the other; see bench/RESULTS.md). The regions are those of
    :func:`speech_regions` (the same pieces, joined the same way). Use as a context manager: leaving it (a decode
    that failed) drops the pieces not started."""

    def __init__(self, vad_options: VadOptions | None = None, chunk_s: float = VAD_CHUNK_S) -> None:
        self._options = vad_options or utterance_vad_options()
        self._step = _vad_step(chunk_s)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vad")
        self._pieces: list[tuple[int, Future[list[tuple[int, int]]]]] = []
        self._next = 0

    def __enter__(self) -> StreamedSpeechRegions:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def started(self) -> int:
        """Pieces whose VAD has been started so far."""
        return len(self._pieces)

    def feed(self, wave: np.ndarray, filled: int) -> None:
        """``wave[:filled]`` is decoded: start the VAD of every piece it completes (the decoder's callback)."""
        while self._next + self._step <= filled:
            self._start(wave)

    def regions(self, wave: np.ndarray) -> list[tuple[int, int]]:
        """The speech regions of the complete ``wave`` (the pieces not started yet run now)."""
        while self._next < len(wave):
            self._start(wave)
        return _joined([(offset, piece.result()) for offset, piece in self._pieces], self._options)

    def _start(self, wave: np.ndarray) -> None:
        offset, self._next = self._next, self._next + self._step
        self._pieces.append((offset, self._pool.submit(_piece_regions, wave, offset, self._step, self._options)))


def _vad_step(chunk_s: float) -> int:
    return max(round(chunk_s * SAMPLE_RATE_HZ), SAMPLE_RATE_HZ)


def _piece_regions(wave: np.ndarray, offset: int, step: int, options: VadOptions) -> list[tuple[int, int]]:
    """Speech regions of ``wave[offset:offset + step]``, in samples of the whole wave."""
    piece = np.asarray(wave[offset : offset + step], dtype=np.float32)
    stamps = get_speech_timestamps(piece, vad_options=options, sampling_rate=SAMPLE_RATE_HZ)
    return [(offset + int(stamp["start"]), offset + int(stamp["end"])) for stamp in stamps]


def _joined(pieces: list[tuple[int, list[tuple[int, int]]]], options: VadOptions) -> list[tuple[int, int]]:
    """The pieces' regions in order, a region cut by a piece boundary joined again (see :func:`speech_regions`)."""
    join = options.min_silence_duration_ms * SAMPLE_RATE_HZ // 1000
    regions: list[tuple[int, int]] = []
    for offset, piece in pieces:
        for start, end in piece:
            if regions and offset > 0 and start - regions[-1][1] <= join and regions[-1][1] >= offset - join:
                regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
            else:
                regions.append((start, end))
    return regions


def _energy_curve(wave: np.ndarray, start: int, end: int) -> np.ndarray:
    """Mean energy of 100 ms windows centred every 10 ms over ``wave[start:end]`` (index i = sample start + i*hop)."""
    squared = np.square(wave[start:end], dtype=np.float64)
    hops = len(squared) // ENERGY_HOP
    per_hop = squared[: hops * ENERGY_HOP].reshape(hops, ENERGY_HOP).mean(axis=1)
    kernel = np.ones(ENERGY_WINDOW_HOPS) / ENERGY_WINDOW_HOPS
    return np.convolve(per_hop, kernel, mode="same")


def _split_long(wave: np.ndarray, start: int, end: int, min_len: int, max_len: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` at its quietest admissible points until every piece is at most ``max_len`` samples."""
    if end - start <= max_len:
        return [(start, end)]
    low, high = (start + min_len, end - min_len) if 2 * min_len < max_len else (end - max_len, start + max_len)
    energy = _energy_curve(wave, start, end)
    first = max(0, -(-(low - start) // ENERGY_HOP))
    last = min(len(energy) - 1, (high - start) // ENERGY_HOP)
    if last < first:
        cut_at = (start + end) // 2
    else:
        cut_at = start + (first + int(np.argmin(energy[first : last + 1]))) * ENERGY_HOP + ENERGY_HOP // 2
    return _split_long(wave, start, cut_at, min_len, max_len) + _split_long(wave, cut_at, end, min_len, max_len)


def _merge_short(
    regions: list[tuple[int, int]], min_len: int, max_len: int, max_gap: int, speakers: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Merge short regions, shortest first, into the neighbour across the smaller admissible gap (see module doc);
    with ``speakers`` (one label per region), only into a neighbour with the same label."""
    starts = [start for start, _ in regions]
    ends = [end for _, end in regions]
    prev = list(range(-1, len(regions) - 1))
    nxt = [*range(1, len(regions)), -1]
    alive = [True] * len(regions)
    heap = [(ends[i] - starts[i], starts[i], i) for i in range(len(regions)) if ends[i] - starts[i] < min_len]
    heapq.heapify(heap)
    while heap:
        length, _, i = heapq.heappop(heap)
        if not alive[i] or ends[i] - starts[i] != length:
            continue
        options = []
        for j in (prev[i], nxt[i]):
            if j < 0 or (speakers is not None and speakers[j] != speakers[i]):
                continue
            gap = starts[i] - ends[j] if j == prev[i] else starts[j] - ends[i]
            span = max(ends[i], ends[j]) - min(starts[i], starts[j])
            if gap <= max_gap and span <= max_len:
                options.append((gap, span, j))
        if not options:
            continue
        _, _, j = min(options)
        starts[j], ends[j] = min(starts[i], starts[j]), max(ends[i], ends[j])
        alive[i] = False
        if prev[i] >= 0:
            nxt[prev[i]] = nxt[i]
        if nxt[i] >= 0:
            prev[nxt[i]] = prev[i]
        if ends[j] - starts[j] < min_len:
            heapq.heappush(heap, (ends[j] - starts[j], starts[j], j))
    return [(starts[i], ends[i]) for i in range(len(regions)) if alive[i]]


def cores_up_to(cap: int) -> int:
    """This host's cores, at most ``cap``: the default count of threads for the episode path's parallel parts."""
    return max(1, min(os.cpu_count() or 1, cap))


def piece_evidence(wave: np.ndarray, pieces: Sequence[tuple[int, int]], workers: int | None = None) -> np.ndarray:
    """Per piece: loudness (RMS in dBFS) and median pitch (YIN, semitones above 100 Hz), shape (pieces, 2).

    ``workers`` threads (default: the cores, at most :data:`MAX_EVIDENCE_WORKERS`) take contiguous shares of the
    pieces: YIN's FFTs run outside the GIL (the built hour's 1,152 pieces: 4.8 s on one thread, 2.4 s on two, the same
    values). The VAD stays on one thread: two 10-minute pieces at once took 4.0 s instead of 7.8 s for the hour but
    held 250 MB more while they ran, and the hour's run already peaks near its 1.5 GB bound (bench/RESULTS.md)."""
    workers = min(workers or cores_up_to(MAX_EVIDENCE_WORKERS), max(len(pieces), 1))
    if workers == 1:
        return _evidence(wave, pieces)
    bounds = np.linspace(0, len(pieces), workers + 1).round().astype(int)
    with ThreadPoolExecutor(workers, thread_name_prefix="evidence") as pool:
        shares = pool.map(lambda share: _evidence(wave, pieces[share[0] : share[1]]), itertools.pairwise(bounds))
        return np.concatenate(list(shares))


def _evidence(wave: np.ndarray, pieces: Sequence[tuple[int, int]]) -> np.ndarray:
    evidence = np.zeros((len(pieces), 2))
    for row, (start, end) in enumerate(pieces):
        audio = np.asarray(wave[start:end], dtype=np.float32)
        evidence[row, 0] = 10 * np.log10(float(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)
        if len(audio) >= 2048:
            pitch = librosa.yin(
                audio, fmin=PITCH_RANGE_HZ[0], fmax=PITCH_RANGE_HZ[1], sr=SAMPLE_RATE_HZ, frame_length=1024
            )
            evidence[row, 1] = float(np.median(12 * np.log2(pitch / 100.0)))
        else:
            evidence[row, 1] = np.nan  # too short to say: it merges by loudness alone
    return evidence


def evidence_groups(
    wave: np.ndarray, pieces: Sequence[tuple[int, int]], speakers: Sequence[int] | None = None
) -> list[int]:
    """Rule 3: a group label per piece for :func:`merge_pieces`, a new group wherever the speaker changes (with
    ``speakers``) or the loudness or pitch jumps between neighbours, so no merge crosses either."""
    evidence = piece_evidence(wave, pieces)
    groups: list[int] = []
    for row in range(len(pieces)):
        same = bool(groups) and (speakers is None or speakers[row] == speakers[row - 1])
        if same:
            loudness, pitch = np.abs(evidence[row] - evidence[row - 1])
            same = loudness <= EVIDENCE_MAX_DB and not pitch > EVIDENCE_MAX_SEMITONES
        groups.append(groups[-1] if same else (groups[-1] + 1 if groups else 0))
    return groups


def with_pause_context(
    segments: Sequence[Segment], duration_s: float, context_s: float = PAUSE_CONTEXT_S
) -> list[Segment]:
    """Rule 4: each segment widened by up to ``context_s`` into the pause before and after it (half of a pause
    between two segments at most; the episode's start and end bound the first and last)."""
    widened = []
    for index, segment in enumerate(segments):
        before = segment.start_s - (segments[index - 1].end_s if index else 0.0)
        after = (segments[index + 1].start_s if index + 1 < len(segments) else duration_s) - segment.end_s
        widened.append(Segment(segment.start_s - min(context_s, before / 2), segment.end_s + min(context_s, after / 2)))
    return widened


def split_regions(
    wave: np.ndarray, regions: Sequence[tuple[int, int]], min_s: float = DEFAULT_MIN_S, max_s: float = DEFAULT_MAX_S
) -> list[tuple[int, int]]:
    """Rule 1: the speech regions (sample offsets into the 16 kHz ``wave``) with every one over ``max_s`` split."""
    _check_range(min_s, max_s)
    min_len, max_len = round(min_s * SAMPLE_RATE_HZ), round(max_s * SAMPLE_RATE_HZ)
    return [piece for start, end in regions if end > start for piece in _split_long(wave, start, end, min_len, max_len)]


def merge_pieces(
    pieces: Sequence[tuple[int, int]],
    min_s: float = DEFAULT_MIN_S,
    max_s: float = DEFAULT_MAX_S,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    speakers: Sequence[int] | None = None,
) -> list[Segment]:
    """Rule 2 on split pieces: short ones merged into a neighbour; with ``speakers`` (a label per piece), only into a
    neighbour of the same speaker, so no segment spans a change of speaker (see ``speakers.segment_and_diarize``)."""
    _check_range(min_s, max_s)
    if speakers is not None and len(speakers) != len(pieces):
        raise ValueError(f"{len(speakers)} speaker labels for {len(pieces)} pieces")
    min_len, max_len, max_gap = (
        round(min_s * SAMPLE_RATE_HZ),
        round(max_s * SAMPLE_RATE_HZ),
        round(max_gap_s * SAMPLE_RATE_HZ),
    )
    merged = _merge_short(list(pieces), min_len, max_len, max_gap, speakers)
    return [Segment(start_s=start / SAMPLE_RATE_HZ, end_s=end / SAMPLE_RATE_HZ) for start, end in merged]


def _check_range(min_s: float, max_s: float) -> None:
    if not 0 < min_s <= max_s:
        raise ValueError(f"segment length range [{min_s}, {max_s}] s is empty; need 0 < min_s <= max_s")


def plan_segments(
    wave: np.ndarray,
    regions: Sequence[tuple[int, int]],
    min_s: float = DEFAULT_MIN_S,
    max_s: float = DEFAULT_MAX_S,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> list[Segment]:
    """Turn speech regions (sample offsets into the 16 kHz ``wave``) into segments by the module's split/merge rule."""
    return merge_pieces(split_regions(wave, regions, min_s, max_s), min_s, max_s, max_gap_s)


def segment_episode(
    wave: np.ndarray,
    min_s: float = DEFAULT_MIN_S,
    max_s: float = DEFAULT_MAX_S,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    vad_options: VadOptions | None = None,
    regions: list[tuple[int, int]] | None = None,
) -> list[Segment]:
    """Segments of a 16 kHz mono episode wave: VAD speech regions (``regions`` when already found), split and merged
    to ``[min_s, max_s]``.

    Every VAD speech sample lies in exactly one segment; only isolated short speech (no neighbour within
    ``max_gap_s`` that keeps the merge within ``max_s``) yields a segment shorter than ``min_s``.
    """
    regions = speech_regions(wave, vad_options) if regions is None else regions
    return plan_segments(wave, regions, min_s, max_s, max_gap_s)
