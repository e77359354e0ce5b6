"""Streaming decode of a podcast episode to 16 kHz mono float32, hashing the file's bytes on the way.

The compressed file is never held in memory: FFmpeg (through PyAV) pulls it through a small buffer, and the same
bytes feed the SHA-256 that identifies the episode. Only 16 kHz mono float32 is kept (about 230 MB per hour).
Channels are averaged (as :mod:`emojudge_models.ingest.audio` does for clips) rather than mixed by FFmpeg's mono
downmix, which adds +3 dB to stereo and can push samples past full scale. One channel can be decoded alone instead
(``channel``, 1-based), for episodes recorded with a microphone per voice (``EMOJUDGE_EPISODE_CHANNELS=split``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av
import numpy as np

from emojudge_models.ingest.truncation import mp4_truncated_reason, truncated_reason
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DEFAULT_MAX_EPISODE_S = 4 * 3600.0
MIN_EPISODE_S = 10.0
SILENCE_PEAK = 1e-4
"""An episode whose absolute peak stays below this (-80 dBFS) is all silence."""
SILENT_REASON = "all silence (peak below -80 dBFS)"
READ_BUFFER_BYTES = 1 << 16
"""How many bytes of the compressed file FFmpeg reads at a time."""
BLOCK_SAMPLES = SAMPLE_RATE_HZ
"""Samples per decoded block (1 s). The resampler gathers them in FFmpeg; one block per codec frame (384 samples of
a 48 kHz MP3) cost Python overhead per frame: the built hour's MP3 decoded in 9.1 s that way, in 5.5 s in 1-s blocks,
the same samples (bench/RESULTS.md)."""


class EpisodeRejected(ValueError):
    """An episode that cannot be scored; ``reason`` is one stable line saying why (no paths, no object reprs)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class EpisodeHeader:
    """What the container says about an episode before any audio is decoded."""

    format_name: str
    codec: str
    sample_rate_hz: int
    channels: int
    duration_s: float | None
    """From the container header; ``None`` when the container does not say (then limits are checked on decode)."""
    bit_rate: int | None = None
    """The audio stream's bits per second, where known (tells a declared duration from a size-based estimate)."""


@dataclass(frozen=True)
class DecodedEpisode:
    """A whole episode at 16 kHz mono float32, with its content hash and header."""

    path: str
    sha256: str
    header: EpisodeHeader
    wave: np.ndarray

    @property
    def duration_s(self) -> float:
        """Seconds of decoded audio."""
        return len(self.wave) / SAMPLE_RATE_HZ


class _HashingReader:
    """A read-only file object for FFmpeg that hashes the bytes in file order as they stream past.

    FFmpeg may seek (an M4A whose index sits at the end, for example); bytes are hashed only when they continue the
    hashed prefix, and :meth:`finish` hashes whatever FFmpeg never read, so the digest is always of the whole file.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self._hashed_upto = 0

    def read(self, size: int = -1) -> bytes:
        position = self._handle.tell()
        data = self._handle.read(size)
        end = position + len(data)
        if position <= self._hashed_upto < end:
            self._digest.update(data[self._hashed_upto - position :])
            self._hashed_upto = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def finish(self) -> str:
        """Hash the bytes FFmpeg skipped or never reached and return the file's SHA-256."""
        self._handle.seek(self._hashed_upto)
        for block in iter(lambda: self._handle.read(1 << 20), b""):
            self._digest.update(block)
        return self._digest.hexdigest()


def _ffmpeg_cause(error: av.FFmpegError) -> str:
    """FFmpeg's message without the errno and the path (so reasons stay stable and one line)."""
    return str(error.strerror or type(error).__name__).strip().rstrip(".")


def _check_duration(path: Path, duration_s: float, source: str, max_duration_s: float, min_duration_s: float) -> None:
    """Reject ``duration_s`` outside [min_duration_s, max_duration_s]; ``source`` says where the number came from."""
    if duration_s > max_duration_s:
        raise EpisodeRejected(
            path, f"{source} {duration_s:.1f} s, longer than the {max_duration_s:g} s limit (EMOJUDGE_MAX_EPISODE_S)"
        )
    if duration_s < min_duration_s:
        raise EpisodeRejected(path, f"{source} {duration_s:.1f} s, shorter than the {min_duration_s:g} s minimum")


class EpisodeReader:
    """An open episode: its header (limits already checked) and an iterator of 16 kHz mono float32 blocks.

    Use as a context manager; :attr:`sha256` is available once :meth:`blocks` has been exhausted.
    """

    def __init__(
        self,
        path: Path | str,
        max_duration_s: float = DEFAULT_MAX_EPISODE_S,
        min_duration_s: float = MIN_EPISODE_S,
        channel: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_duration_s = max_duration_s
        self.min_duration_s = min_duration_s
        self.channel = channel
        """1-based channel to decode alone; ``None`` averages every channel."""
        self._sha256: str | None = None
        if not self.path.is_file():
            raise EpisodeRejected(self.path, "file not found")
        if self.path.stat().st_size == 0:
            raise EpisodeRejected(self.path, "file is empty (0 bytes)")
        if cut := mp4_truncated_reason(self.path):
            raise EpisodeRejected(self.path, cut)
        self._handle = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self._reader = _HashingReader(self._handle)
        try:
            self._container = av.open(self._reader, mode="r", buffer_size=READ_BUFFER_BYTES)
        except av.FFmpegError as error:
            self._handle.close()
            raise EpisodeRejected(self.path, f"cannot open as audio: {_ffmpeg_cause(error)}") from None
        try:
            self.header = self._read_header()
        except EpisodeRejected:
            self.close()
            raise

    def _read_header(self) -> EpisodeHeader:
        if not self._container.streams.audio:
            raise EpisodeRejected(self.path, "no audio stream in the file")
        stream = self._container.streams.audio[0]
        duration_s: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration_s = self._container.duration / av.time_base
        header = EpisodeHeader(
            format_name=self._container.format.name,
            codec=stream.codec_context.name,
            sample_rate_hz=int(stream.codec_context.sample_rate or 0),
            channels=int(stream.codec_context.channels or 0),
            duration_s=duration_s,
            bit_rate=int(stream.codec_context.bit_rate or 0) or None,
        )
        if duration_s is not None:
            self._check(duration_s, "header says")
        if self.channel is not None and not 1 <= self.channel <= header.channels:
            raise EpisodeRejected(self.path, f"has {header.channels} channel(s), no channel {self.channel}")
        return header

    def _check(self, duration_s: float, source: str) -> None:
        _check_duration(self.path, duration_s, source, self.max_duration_s, self.min_duration_s)

    def _mono(self, planes: np.ndarray) -> np.ndarray:
        """The block of the chosen channel, or the mean of all channels, as float32."""
        if self.channel is None:
            return planes.mean(axis=0, dtype=np.float32)
        return np.ascontiguousarray(planes[self.channel - 1], dtype=np.float32)

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield the episode as consecutive 16 kHz mono float32 blocks of :data:`BLOCK_SAMPLES` (the last shorter).

        Raises :class:`EpisodeRejected` if decoding fails, the decoded audio runs past the maximum duration or falls
        far short of the duration the container declares (a truncated file: :mod:`emojudge_models.ingest.truncation`).
        """
        resampler: av.AudioResampler | None = None
        decoded = 0
        limit = math.ceil(self.max_duration_s * SAMPLE_RATE_HZ)
        try:
            for frame in self._container.decode(audio=0):
                if resampler is None:
                    resampler = av.AudioResampler(
                        format="fltp", layout=frame.layout.name, rate=SAMPLE_RATE_HZ, frame_size=BLOCK_SAMPLES
                    )
                for out in resampler.resample(frame):
                    block = self._mono(out.to_ndarray())
                    decoded += len(block)
                    if decoded > limit:
                        self._check(decoded / SAMPLE_RATE_HZ, "decoded audio runs past")
                    yield block
            if resampler is not None:
                for out in resampler.resample(None):
                    block = self._mono(out.to_ndarray())
                    decoded += len(block)
                    yield block
        except av.FFmpegError as error:
            self._check_complete(decoded)
            raise EpisodeRejected(
                self.path, f"decoding failed after {decoded / SAMPLE_RATE_HZ:.1f} s: {_ffmpeg_cause(error)}"
            ) from None
        self._check_complete(decoded)
        self._sha256 = self._reader.finish()

    def _check_complete(self, decoded: int) -> None:
        """Reject a file cut short: ``decoded`` samples (16 kHz) far below what its container declares."""
        size = os.fstat(self._handle.fileno()).st_size
        cut = truncated_reason(self.header.duration_s, decoded / SAMPLE_RATE_HZ, size, self.header.bit_rate)
        if cut is not None:
            raise EpisodeRejected(self.path, cut)

    @property
    def sha256(self) -> str:
        """SHA-256 of the file's bytes; only after :meth:`blocks` has run to the end."""
        if self._sha256 is None:
            raise RuntimeError(f"{self.path}: read every block before asking for the SHA-256")
        return self._sha256

    def close(self) -> None:
        """Close the container and the file."""
        self._container.close()
        self._handle.close()

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def decode_episode(
    path: Path | str,
    max_duration_s: float = DEFAULT_MAX_EPISODE_S,
    min_duration_s: float = MIN_EPISODE_S,
    channel: int | None = None,
    on_decoded: Callable[[np.ndarray, int], None] | None = None,
) -> DecodedEpisode:
    """Decode ``path`` (WAV, FLAC, MP3, M4A/AAC, OGG/Opus; any rate and channel count) to 16 kHz mono float32: the
    mean of its channels, or only ``channel`` (1-based) when given. ``on_decoded(wave, filled)`` is called after each
    block with the samples decoded so far (``wave[:filled]``; they are not written again), so work on the start of
    the episode can begin during the decode.

    Checks the header's duration before decoding, then the decoded duration, finiteness and silence. Every failure
    is one :class:`EpisodeRejected`. The output buffer is sized from the header, so a long episode is not copied
    while it grows (peak memory is about the 16 kHz array itself).
    """
    with EpisodeReader(path, max_duration_s, min_duration_s, channel) as reader:
        estimate = reader.header.duration_s or 600.0
        wave = np.empty(math.ceil(min(estimate + 1.0, max_duration_s + 1.0) * SAMPLE_RATE_HZ), dtype=np.float32)
        filled = 0
        for block in reader.blocks():
            if filled + len(block) > len(wave):
                wave = np.resize(wave, max(len(wave) * 3 // 2, filled + len(block)))
            wave[filled : filled + len(block)] = block
            filled += len(block)
            if on_decoded is not None:
                on_decoded(wave, filled)
        sha256 = reader.sha256
        header = reader.header
    path = Path(path)
    if filled == 0:
        raise EpisodeRejected(path, "no audio could be decoded")
    wave = wave[:filled]
    _check_duration(path, filled / SAMPLE_RATE_HZ, "decoded audio is", max_duration_s, min_duration_s)
    # max/min propagate NaN and show inf without the full-size temporaries of isfinite/abs (the wave itself is
    # ~460 MB for 2 hours; a float copy of it would double the decode's peak memory).
    peak = max(float(wave.max()), -float(wave.min()))
    if not math.isfinite(peak):
        raise EpisodeRejected(path, "decoded samples contain NaN or inf")
    if peak < SILENCE_PEAK:
        raise EpisodeRejected(path, SILENT_REASON)
    return DecodedEpisode(path=str(path), sha256=sha256, header=header, wave=wave)
