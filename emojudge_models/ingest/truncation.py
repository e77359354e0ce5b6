"""Whether a compressed file (MP3, M4A/AAC, ...) was cut short: it decodes to far less audio than it declares.

A half-copied MP3 or M4A still opens and decodes; FFmpeg just stops early (or fails near the end), and the clip or
episode would be scored as a shorter one. Its container says otherwise: an MP3's Xing/Info frame count and an M4A's
sample table give the whole file's duration. Where a container declares nothing, FFmpeg estimates the duration from
the file's size and bitrate, and that estimate shrinks with the file, so it never calls a file truncated; the
bitrate test below tells the two apart (a truncated file's bytes cannot hold the audio its header declares).

An MP4/M4A is checked before any decoding, from its top-level boxes: a cut file's last box (the media data, or the
index when it was written last, in which case FFmpeg cannot open the file at all) runs past the end of the file.
A truncated WAV is caught from its RIFF chunk sizes the same way (:func:`emojudge_models.ingest.audio._wav_shortfall`).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

DECODED_SHARE = 0.95
"""Below this share of the declared duration, decoded audio counts as cut short (decoders agree to a frame)."""
MIN_SHORTFALL_S = 0.5
"""...and only when at least this much audio is missing (a few frames of encoder padding never are)."""


def truncated_reason(declared_s: float | None, decoded_s: float, size_bytes: int, bit_rate: int | None) -> str | None:
    """Why the file is truncated, or None: ``decoded_s`` seconds decoded where the header declares ``declared_s``,
    in a file of ``size_bytes`` whose stream runs at ``bit_rate`` bits per second (None or 0: unknown)."""
    if declared_s is None or not math.isfinite(declared_s) or declared_s <= 0:
        return None
    if decoded_s >= DECODED_SHARE * declared_s or declared_s - decoded_s < MIN_SHORTFALL_S:
        return None
    if bit_rate and size_bytes * 8 / bit_rate >= DECODED_SHARE * declared_s:
        return None  # the bytes could hold it all: the declared duration is an estimate, not the header's word
    return f"file is truncated: its header declares {declared_s:.1f} s of audio, {decoded_s:.1f} s decode"


def mp4_truncated_reason(path: Path) -> str | None:
    """Why the MP4/M4A at ``path`` is truncated (a top-level box runs past the end of the file), or None; files that
    are not ISO base media (no leading ``ftyp`` box) are never judged here."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset < size:
            handle.seek(offset)
            head = handle.read(16)
            if len(head) < 8:
                return f"file is truncated: it ends inside the header of a box at byte {offset}"
            box_size, box_type = struct.unpack(">I4s", head[:8])
            if offset == 0 and box_type != b"ftyp":
                return None
            if box_size == 1 and len(head) == 16:
                box_size = struct.unpack(">Q", head[8:])[0]
            if box_size == 0:  # the last box, running to the end of the file by definition
                return None
            if box_size < 8:
                return None  # not a box layout this reads; FFmpeg has the last word
            if offset + box_size > size:
                name = box_type.decode("latin-1")
                return f"file is truncated: its {name} box ends at byte {offset + box_size}, the file holds {size}"
            offset += box_size
    return None
