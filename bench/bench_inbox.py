"""The podcast inbox end to end: a long episode built from real speech, scored as a user's inbox would score it.

Usage: python bench/bench_inbox.py [--minutes 60] [--home DIR] [--decode-hours 2] [--no-ami] [--no-score]
                                   [--judge local|scripted] [--device cpu|cuda] [--daemon ui|bare]

1. Builds an episode from RAVDESS clips (``../shared/data/ravdess-dev``): four actors (two male, two female) taking
   turns of 1-4 clips, 0.25-0.8 s between clips of a turn and 0.6-2.5 s between turns, each actor panned
   differently, a -66 dBFS noise floor, encoded as a 48 kHz stereo 128 kb/s MP3 with PyAV's LAME; longer than 10
   minutes, it is copies of a 5-minute MP3's frames (see :func:`build_episode`). The position of every clip
   (trimmed of its silence) is the reference: speaker, start, end.
2. Trains the default local profile's models on RAVDESS (``emojudge eval-set add`` + ``materialize``), unless
   ``--home`` already holds registered models, in its own process.
3. Scores the episode in a fresh process with ``emojudge inbox add --speakers 4`` + ``emojudge inbox run``: Dagster
   step times of that run, wall time, peak RSS of the process (and of its children: the local judge's server).
   ``--judge scripted`` swaps the local Gemma judge for ``openai-chat`` against the tests' scripted local server
   (it keeps the fused label, answering at once): the rest of the local profile is unchanged, and the run's time
   is then the pipeline's without the judge's (which on a loaded 2-core machine can dominate it).
3b. The daemon path: the same audio dropped into the inbox of a running daemon (started first; the drop follows its
   first inbox-sensor tick): ``--daemon ui`` (default) runs ``emojudge ui``, as the README has users leave it
   running; ``--daemon bare`` runs ``dagster-daemon`` alone (see :data:`DAEMONS`). The inbox sensor takes the file,
   the score job runs with its executor (the steps in the run's process on one machine). Reports drop-to-done time,
   its phases (settle and sensor, queue, run process start, steps), the steps, and the episode's decodes across the
   run's processes; the report ends with ``inbox: hour cli=<s>s daemon=<s>s recall=<r> decodes=<n>``.
4. Reads the segments and speakers the run wrote: segment recall (a reference clip counts when one segment covers it,
   each boundary within 0.5 s), reference speech covered by segments, frame ARI of the speakers (10 ms frames with one
   reference speaker). In another process, the ``utterances`` step split into decode and segments + speakers (VAD,
   voice vectors, clustering, speaker-aware merge), and the ARI without the speaker count (the count estimated).
5. The same segmentation and diarization figures on the ten AMI excerpts against their RTTM, with the default
   segment range and with 1-4 s segments.
6. Decode alone of a ``--decode-hours`` 48 kHz stereo MP3 in its own process: wall time and peak RSS.

``--device cuda`` scores with ``EMOJUDGE_DEVICE=cuda`` (the Whisper encoders and the ASR on the GPU; the VAD and the
voice encoder stay on the CPU), for a machine lent a GPU.

Prints a markdown report; paste it into bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RAVDESS = Path(os.environ.get("EMOJUDGE_RAVDESS_DIR", SHARED / "ravdess-dev"))
AMI = Path(os.environ.get("EMOJUDGE_AMI_DIR", SHARED / "ami-debug"))
BUILD_SR = 48_000
ACTORS = ("ravdess_actor01", "ravdess_actor02", "ravdess_actor03", "ravdess_actor04")
PAN = {"ravdess_actor01": (1.0, 0.6), "ravdess_actor02": (0.6, 1.0), "ravdess_actor03": (0.9, 0.9)}
PAN_DEFAULT = (1.0, 0.8)
NOISE_DBFS = -66.0
TOLERANCE_S = 0.5
SET_NAME = "ravdess"


@dataclass(frozen=True)
class Turn:
    speaker: str
    start_s: float
    end_s: float


def _clips(data: Path) -> dict[str, list[np.ndarray]]:
    """Each actor's clips at 48 kHz mono, trimmed of leading and trailing silence (30 dB under the peak)."""
    import librosa
    import soundfile as sf

    rows = list(csv.DictReader((data / "manifest.csv").open(encoding="utf-8")))
    clips: dict[str, list[np.ndarray]] = {actor: [] for actor in ACTORS}
    for row in rows:
        if row["speaker_id"] in clips:
            wave, sr = sf.read(data / row["path"], dtype="float32", always_2d=True)
            assert sr == BUILD_SR, f"{row['path']}: {sr} Hz"
            _, (start, end) = librosa.effects.trim(wave.mean(axis=1), top_db=30)
            clips[row["speaker_id"]].append(wave.mean(axis=1)[start:end])
    return clips


def _blocks(data: Path, seconds: float, seed: int) -> Iterator[tuple[np.ndarray, list[Turn]]]:
    """Stereo (samples, 2) blocks of the episode, each with the reference clips it holds (times in the episode)."""
    rng = np.random.default_rng(seed)
    clips = _clips(data)
    noise = 10 ** (NOISE_DBFS / 20)
    position = 0
    previous = None
    total = round(seconds * BUILD_SR)

    def silence(length_s: float) -> np.ndarray:
        return rng.normal(0.0, noise, (round(length_s * BUILD_SR), 2)).astype(np.float32)

    lead = silence(1.0)
    position += len(lead)
    yield lead, []
    while position < total:
        speaker = rng.choice([actor for actor in ACTORS if actor != previous])
        previous = speaker
        left, right = PAN.get(speaker, PAN_DEFAULT)
        parts, turns = [], []
        for index in range(int(rng.integers(1, 5))):
            if index:
                gap = silence(rng.uniform(0.25, 0.8))
                parts.append(gap)
                position += len(gap)
            wave = clips[speaker][int(rng.integers(len(clips[speaker])))]
            stereo = np.stack([wave * left, wave * right], axis=1) + silence(len(wave) / BUILD_SR)[: len(wave)]
            parts.append(stereo.astype(np.float32))
            turns.append(Turn(str(speaker), position / BUILD_SR, (position + len(wave)) / BUILD_SR))
            position += len(wave)
        pause = silence(rng.uniform(0.6, 2.5))
        parts.append(pause)
        position += len(pause)
        yield np.concatenate(parts), turns


def _encode(path: Path, data: Path, seconds: float, seed: int) -> list[Turn]:
    """Write an episode MP3 block by block (never the whole episode in memory); returns the reference clips."""
    import av

    reference: list[Turn] = []
    frame_size = 1152
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=BUILD_SR)
        stream.layout = "stereo"
        stream.bit_rate = 128_000
        carry = np.zeros((0, 2), dtype=np.float32)
        for block, turns in _blocks(data, seconds, seed):
            reference += turns
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
    return reference


def _mp3_frames(data: bytes) -> list[bytes]:
    """The MPEG-1 Layer III audio frames of a CBR MP3 written by :func:`_encode`, without the ID3v2 tag and the
    Xing/Info frame (which states the length of that file only)."""
    offset = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        offset = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    frames = []
    while offset + 4 <= len(data):
        header = data[offset : offset + 4]
        if header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
            break
        length = 144_000 * bitrates[header[2] >> 4] // BUILD_SR + (header[2] >> 1 & 1)
        frame = data[offset : offset + length]
        if b"Xing" not in frame[:64] and b"Info" not in frame[:64]:
            frames.append(frame)
        offset += length
    return frames


def build_episode(path: Path, data: Path, seconds: float, seed: int = 7, piece_s: float = 300.0) -> list[Turn]:
    """The episode MP3 and its reference clips. Beyond ``piece_s`` the episode is copies of one ``piece_s`` MP3, its
    frames concatenated (no header, as streamed MP3 often is: FFmpeg estimates the length from the bitrate), so an
    hour is built in the time of 5 minutes; every copy's segments are still new audio to the pipeline (a segment's
    identity is the episode hash plus its times)."""
    if seconds <= piece_s:
        return _encode(path, data, seconds, seed)
    piece = path.with_name(f".piece-{path.name}")
    turns = _encode(piece, data, piece_s, seed)
    frames = _mp3_frames(piece.read_bytes())
    piece.unlink()
    copy_s = len(frames) * 1152 / BUILD_SR
    copies = int(np.ceil(seconds / copy_s))
    body = b"".join(frames)
    with path.open("wb") as handle:
        for _ in range(copies):
            handle.write(body)
    return [
        Turn(turn.speaker, turn.start_s + copy * copy_s, turn.end_s + copy * copy_s)
        for copy in range(copies)
        for turn in turns
        if turn.end_s <= copy_s
    ]


def _id3v1(title: str) -> bytes:
    """An ID3v1 tag (the last 128 bytes of an MP3, skipped by decoders) with ``title``."""
    return b"TAG" + title.encode()[:30].ljust(125, b"\0")


# --- measures ------------------------------------------------------------------------------------------------------


def segment_recall(segments: list[tuple[float, float]], reference: list[Turn]) -> float:
    """Share of reference clips lying in one segment, each boundary within TOLERANCE_S."""
    starts = np.array([start for start, _ in segments])
    ends = np.array([end for _, end in segments])
    hits = sum(
        bool(np.any((starts <= turn.start_s + TOLERANCE_S) & (ends >= turn.end_s - TOLERANCE_S))) for turn in reference
    )
    return hits / len(reference) if reference else float("nan")


def speech_covered(segments: list[tuple[float, float]], reference: list[Turn], seconds: float) -> float:
    """Share of reference speech (10 ms frames) inside some segment."""
    frames = int(seconds * 100) + 1
    speech = np.zeros(frames, dtype=bool)
    inside = np.zeros(frames, dtype=bool)
    for turn in reference:
        speech[int(turn.start_s * 100) : int(turn.end_s * 100)] = True
    for start, end in segments:
        inside[int(start * 100) : int(end * 100)] = True
    return float((speech & inside).sum() / max(1, speech.sum()))


def frame_ari(segments: list[tuple[float, float]], labels: list[str], reference: list[Turn], seconds: float) -> float:
    """ARI over 10 ms frames where exactly one reference speaker talks and a segment lies (NaN with under two such
    speakers)."""
    from sklearn.metrics import adjusted_rand_score

    frames = int(seconds * 100) + 1
    talkers = np.zeros(frames, dtype=int)
    truth = np.full(frames, "", dtype=object)
    for turn in reference:
        talkers[int(turn.start_s * 100) : int(turn.end_s * 100)] += 1
        truth[int(turn.start_s * 100) : int(turn.end_s * 100)] = turn.speaker
    hypothesis = np.full(frames, "", dtype=object)
    for (start, end), label in zip(segments, labels, strict=True):
        hypothesis[int(start * 100) : int(end * 100)] = label
    keep = (talkers == 1) & (hypothesis != "")
    if len(set(truth[keep])) < 2:
        return float("nan")  # no frames, or one speaker: any labelling scores 1.0, which says nothing
    return float(adjusted_rand_score(truth[keep], hypothesis[keep]))


def _peaks() -> dict[str, float]:
    """Peak RSS in MB of this process and of its waited-for children (Linux reports KiB)."""
    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


# --- child processes (each prints one JSON line last) --------------------------------------------------------------


def _cli(argv: list[str]) -> list[str]:
    from emojudge_pipeline import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(argv)
    return out.getvalue().splitlines()


def child_train(data: Path) -> dict:
    from emojudge_models.settings import Settings
    from emojudge_models.store import warehouse

    home = Settings.from_env().home
    if (home / "emojudge.duckdb").exists():
        with warehouse.connect(home, read_only=True) as con:
            if con.execute("SELECT count(*) FROM model_registry").fetchone()[0]:
                return {"trained": False, "wall_s": 0.0}
    started = time.perf_counter()
    _cli(["eval-set", "add", SET_NAME, str(data / "manifest.csv"), "--format", "manifest"])
    _cli(["materialize", SET_NAME])
    return {"trained": True, "wall_s": time.perf_counter() - started, **_peaks()}


class _RssTrace:
    """This process's RSS every 50 ms in a thread (wall time, bytes), to tell which step held the peak."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.05):
            with open("/proc/self/statm") as statm:
                self.samples.append((time.time(), int(statm.read().split()[1]) * page))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float, end: float) -> float:
        """Peak RSS in MB between two wall times (0 when no sample fell between them)."""
        return max((rss for at, rss in self.samples if start <= at <= end), default=0) / 2**20


def child_score(episode: Path, speakers: int) -> dict:
    import dagster as dg

    from emojudge_pipeline import cli

    trace = _RssTrace()
    started = time.perf_counter()
    [added] = _cli(["inbox", "add", "--speakers", str(speakers), str(episode)])
    name = added.split()[0]
    ran = _cli(["inbox", "run"])
    wall = time.perf_counter() - started
    trace.stop()
    instance = cli.instance()
    [run] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": name}), limit=1)
    stats = [stat for stat in instance.get_run_step_stats(run.run_id) if stat.start_time and stat.end_time]
    steps = {stat.step_key: round(stat.end_time - stat.start_time, 1) for stat in stats}
    step_peaks = {stat.step_key: round(trace.peak_mb(stat.start_time, stat.end_time)) for stat in stats}
    return {"name": name, "wall_s": wall, "steps": steps, "step_peaks_mb": step_peaks, "ran": ran[-1:], **_peaks()}


DAEMONS = ("ui", "bare")
"""How the daemon path's daemon runs: ``ui`` is ``emojudge ui`` (``dagster dev``: the webserver, the daemon and one
code server that imports the pipeline once), what the README has users leave running; ``bare`` is ``dagster-daemon
run -m emojudge_pipeline.definitions`` alone, which spawns its own code server and replaces it on every 60-s
workspace refresh (each replacement imports the pipeline again: 6-7 CPU-s)."""


def _daemon_command(how: str) -> tuple[list[str], str | None]:
    """The command of the daemon path's daemon (see :data:`DAEMONS`) and its webserver's URL (None: no webserver)."""
    import socket

    bin_dir = Path(sys.executable).parent
    if how == "bare":
        return [str(bin_dir / "dagster-daemon"), "run", "-m", "emojudge_pipeline.definitions"], None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [str(bin_dir / "emojudge"), "ui", "--port", str(port)], f"http://127.0.0.1:{port}"


def _await_webserver(url: str, timeout_s: float) -> None:
    """Wait until the webserver at ``url`` answers (a user's UI is up before they drop a file)."""
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"the webserver at {url} did not answer within {timeout_s:.0f} s")


def child_daemon(episode: Path, how: str = "ui", timeout_s: float = 3600.0) -> dict:
    """The path users leave running: a real Dagster daemon (``how``, see :data:`DAEMONS`) whose inbox sensor finds
    ``episode`` dropped into the inbox (an ID3v1 tag appended, so it is a new episode with the same audio), registers
    it and launches the score job (run launcher: its own process, which runs the steps with the score job's
    executor). Times the drop to the run's end and counts the episode's decodes across the run's processes."""
    import hashlib
    import shutil
    import signal

    import dagster as dg

    from emojudge_models.episodes.decoded import DecodedEpisodes
    from emojudge_models.episodes.ingest import episode_set_name
    from emojudge_models.home import HomeLayout
    from emojudge_models.settings import Settings
    from emojudge_pipeline import launch

    settings = Settings.from_env()
    instance = launch.instance(settings)
    dropped = settings.inbox_dir / f"daemon-{episode.name}"
    settings.inbox_dir.mkdir(parents=True, exist_ok=True)
    staged = dropped.with_name(f".{dropped.name}.partial")
    shutil.copyfile(episode, staged)
    with staged.open("ab") as handle:
        handle.write(_id3v1("emojudge daemon bench"))
    sha = hashlib.sha256(staged.read_bytes()).hexdigest()
    name = episode_set_name(sha)
    launched = time.time()
    command, url = _daemon_command(how)
    daemon = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if url:
            _await_webserver(url, timeout_s=300.0)
        ready_s = _await_sensor_tick(instance, "inbox_sensor", launched, timeout_s=300.0)
        os.replace(staged, dropped)
        os.utime(dropped)  # written just now, as a copy into the inbox would be: it settles 10 s from here
        dropped_at = dropped.stat().st_mtime
        run = None
        while time.time() - dropped_at < timeout_s:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": name}), limit=1)
            if runs and runs[0].is_finished:
                run = runs[0]
                break
            time.sleep(2.0)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=120)
    if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
        raise SystemExit(f"the daemon's run of {name} did not succeed within {timeout_s:.0f} s: {run}")
    stats = [s for s in instance.get_run_step_stats(run.run_id) if s.start_time and s.end_time]
    steps = {s.step_key: round(s.end_time - s.start_time, 1) for s in stats}
    record = instance.get_run_record_by_id(run.run_id)
    created = record.create_timestamp.timestamp()
    [starting] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING)
    first_step = min(s.start_time for s in stats)
    decodes = DecodedEpisodes(HomeLayout(settings.home).decoded_episodes).decodes(sha)
    return {
        "name": name,
        "wall_s": record.end_time - dropped_at,
        "steps": steps,
        "decodes": decodes,
        "run_id": run.run_id,
        "ready_s": ready_s,
        "phases": {
            "drop to run request (settle time, sensor)": created - dropped_at,
            "queued": starting.timestamp - created,
            "run process start and imports": first_step - starting.timestamp,
            "steps": max(s.end_time for s in stats) - first_step,
        },
    }


def _await_sensor_tick(instance, sensor: str, since: float, timeout_s: float) -> float:
    """Seconds until the daemon's first tick of ``sensor`` after ``since`` (a running daemon, as users have one when
    they drop a file); raises SystemExit past ``timeout_s``."""
    from dagster._core.scheduler.instigation import InstigatorType

    while time.time() - since < timeout_s:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.name == sensor:
                ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
                if ticks and ticks[0].timestamp >= since:
                    return time.time() - since
        time.sleep(0.5)
    raise SystemExit(f"the daemon did not tick {sensor} within {timeout_s:.0f} s")


def child_ingest(episode: Path, speakers: int, min_s: float, max_s: float) -> dict:
    """The utterances step's parts timed alone (decode; VAD, voice vectors, clustering and the speaker-aware merge),
    with the speaker count, then again without it (the count estimated)."""
    from emojudge_models.episodes.decode import decode_episode
    from emojudge_models.episodes.speakers import segment_and_diarize

    times = {}
    started = time.perf_counter()
    decoded = decode_episode(episode)
    times["decode_s"] = time.perf_counter() - started
    started = time.perf_counter()
    segments, hinted = segment_and_diarize("bench", decoded.wave, min_s=min_s, max_s=max_s, n_speakers=speakers)
    times["diarize_s"] = time.perf_counter() - started
    unhinted_segments, unhinted = segment_and_diarize("bench", decoded.wave, min_s=min_s, max_s=max_s)
    return {
        **times,
        "segments": [(s.start_s, s.end_s) for s in segments],
        "hinted": hinted.speaker_ids,
        "unhinted_segments": [(s.start_s, s.end_s) for s in unhinted_segments],
        "unhinted": unhinted.speaker_ids,
        "seconds": decoded.duration_s,
        **_peaks(),
    }


def child_decode(episode: Path) -> dict:
    from emojudge_models.episodes.decode import decode_episode

    started = time.perf_counter()
    decoded = decode_episode(episode)
    return {"wall_s": time.perf_counter() - started, "seconds": decoded.duration_s, **_peaks()}


def _ami_files() -> dict[str, tuple[Path, list[Turn]]]:
    turns: dict[str, list[Turn]] = {}
    for line in (AMI / "reference.rttm").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields:
            turns.setdefault(fields[1], []).append(
                Turn(fields[7], float(fields[3]), float(fields[3]) + float(fields[4]))
            )
    files = {}
    for path in sorted((AMI / "audio").glob("*.wav")):
        plain = "".join(c for c in unicodedata.normalize("NFKD", path.stem) if not unicodedata.combining(c))
        files[plain] = (path, turns[plain])
    return files


def child_ami() -> dict:
    """Per excerpt and segment range: recall, speech covered, frame ARI with the count and with the threshold."""
    import soundfile as sf

    from emojudge_models.episodes.speakers import segment_and_diarize

    rows = []
    for name, (path, turns) in _ami_files().items():
        wave, _ = sf.read(path, dtype="float32")
        seconds = len(wave) / 16_000
        count = len({turn.speaker for turn in turns})
        for label, (min_s, max_s) in {"default 2.75-11 s": (2.75, 11.0), "short 1-4 s": (1.0, 4.0)}.items():
            segments, hinted = segment_and_diarize(name, wave, min_s=min_s, max_s=max_s, n_speakers=count)
            spans = [(s.start_s, s.end_s) for s in segments]
            unhinted_segments, unhinted = segment_and_diarize(name, wave, min_s=min_s, max_s=max_s)
            unhinted_spans = [(s.start_s, s.end_s) for s in unhinted_segments]
            rows.append(
                {
                    "file": name,
                    "range": label,
                    "speakers": count,
                    "segments": len(segments),
                    "recall": segment_recall(spans, turns),
                    "covered": speech_covered(spans, turns, seconds),
                    "ari_count": frame_ari(spans, hinted.speaker_ids, turns, seconds),
                    "ari_no_count": frame_ari(unhinted_spans, unhinted.speaker_ids, turns, seconds),
                }
            )
    return {"rows": rows}


def _child(argv: list[str], env: dict[str, str]) -> dict:
    """Run this script as a child with ``argv``; its last stdout line is its JSON result."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0:
        sys.stderr.write(process.stdout[-4000:] + process.stderr[-4000:])
        raise SystemExit(f"child {argv[0]} failed with exit status {process.returncode}")
    return json.loads(process.stdout.strip().splitlines()[-1])


# --- the report ----------------------------------------------------------------------------------------------------


def _segments_from_warehouse(home: Path, name: str) -> tuple[list[tuple[float, float]], list[str], int]:
    from emojudge_models.store import warehouse

    with warehouse.connect(home, read_only=True) as con:
        rows = con.execute(
            "SELECT start_s, end_s, speaker_id FROM utterances WHERE eval_set = ? ORDER BY start_s", [name]
        ).fetchall()
        predictions = con.execute("SELECT count(*) FROM predictions WHERE eval_set = ?", [name]).fetchone()[0]
    return [(start, end) for start, end, _ in rows], [speaker for _, _, speaker in rows], predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the built episode")
    parser.add_argument("--home", type=Path, default=None, help="EMOJUDGE_HOME to train in (or reuse models from)")
    parser.add_argument("--decode-hours", type=float, default=2.0, help="length of the decode-only MP3 (0: skip)")
    parser.add_argument("--no-ami", action="store_true", help="skip the AMI excerpts")
    parser.add_argument("--ami-only", action="store_true", help="only the AMI excerpts")
    parser.add_argument("--no-score", action="store_true", help="segmentation and speakers only (no models)")
    parser.add_argument("--data", type=Path, default=RAVDESS, help="RAVDESS folder with manifest.csv")
    parser.add_argument("--judge", choices=("local", "scripted"), default="local", help="see the module doc")
    parser.add_argument(
        "--device", default="cpu", help="EMOJUDGE_DEVICE of the scoring runs (cuda: encoders and the ASR on the GPU)"
    )
    parser.add_argument(
        "--daemon", choices=DAEMONS, default="ui", help="the daemon path's daemon: emojudge ui, or dagster-daemon alone"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {
            "train": lambda: child_train(Path(rest[0])),
            "score": lambda: child_score(Path(rest[0]), int(rest[1])),
            "daemon": lambda: child_daemon(Path(rest[0]), rest[1]),
            "ingest": lambda: child_ingest(Path(rest[0]), int(rest[1]), float(rest[2]), float(rest[3])),
            "decode": lambda: child_decode(Path(rest[0])),
            "ami": child_ami,
        }[kind]()
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    home = args.home or work / "home"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "EMOJUDGE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "EMOJUDGE_INBOX": str(work / "inbox"),
        "EMOJUDGE_TRAIN_SETS": SET_NAME,
        "EMOJUDGE_DEVICE": args.device,
    }
    with contextlib.ExitStack() as stack:
        if args.judge == "scripted":
            sys.path.insert(0, str(REPO / "tests"))
            from batch_api_server import FakeOpenAIServer

            api = stack.enter_context(FakeOpenAIServer(max_lifetime_s=7200))
            env.update(EMOJUDGE_JUDGE="openai-chat", EMOJUDGE_JUDGE_BASE_URL=api.base_url, OPENAI_API_KEY="sk-bench")
        _report(args, work, home, env)


def _report(args: argparse.Namespace, work: Path, home: Path, env: dict[str, str]) -> None:
    """Build, measure and print (see the module doc)."""
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.2f}; episode {args.minutes:g} min, judge {args.judge}, "
        f"device {args.device}, work folder {work}",
        "",
    ]
    printed = 0

    def emit() -> None:
        """Print the lines not printed yet (a long run shows each stage's figures as they come)."""
        nonlocal printed
        print("\n".join(lines[printed:]), flush=True)
        printed = len(lines)

    if args.ami_only:
        lines += _ami_lines(env)
        emit()
        return
    started = time.perf_counter()
    episode = work / "episode.mp3"
    reference = build_episode(episode, args.data, args.minutes * 60)
    with episode.open("ab") as handle:  # an ID3v1 tag naming this bench run: new bytes for a reused --home
        handle.write(_id3v1(f"emojudge bench {work.name}"))
    lines.append(
        f"- built: {len(reference)} clips of {len(ACTORS)} actors, {episode.stat().st_size / 1e6:.1f} MB MP3 "
        f"in {time.perf_counter() - started:.1f} s"
    )
    seconds = args.minutes * 60 + 5
    ingest = _child(["ingest", str(episode), str(len(ACTORS)), "2.75", "11"], env)
    spans = [tuple(span) for span in ingest["segments"]]
    lines += [
        f"- utterances step alone: decode {ingest['decode_s']:.1f} s, "
        f"VAD + voice vectors + clustering + speaker-aware merge {ingest['diarize_s']:.1f} s ({len(spans)} segments, "
        f"{sum(end - start < 2.75 for start, end in spans)} under 2.75 s), peak RSS {ingest['peak_rss_mb']:.0f} MB",
        f"- same segments: recall {segment_recall(spans, reference):.3f}, frame ARI with the count "
        f"{frame_ari(spans, ingest['hinted'], reference, seconds):.3f}; without the count "
        f"{frame_ari([tuple(s) for s in ingest['unhinted_segments']], ingest['unhinted'], reference, seconds):.3f} "
        f"({len(set(ingest['unhinted']))} speakers found)",
    ]
    emit()
    if args.decode_hours > 0:
        long_episode = work / "long.mp3"
        if args.minutes > 5:  # the episode is headerless MP3 frames: copies of it are one longer MP3
            body = episode.read_bytes()
            with long_episode.open("wb") as handle:
                for _ in range(int(np.ceil(args.decode_hours * 60 / args.minutes))):
                    handle.write(body)
        else:
            build_episode(long_episode, args.data, args.decode_hours * 3600, seed=11)
        decode = _child(["decode", str(long_episode)], env)
        lines.append(
            f"- decode alone of a {decode['seconds'] / 3600:.2f} h 48 kHz stereo MP3 "
            f"({long_episode.stat().st_size / 1e6:.0f} MB): {decode['wall_s']:.1f} s, "
            f"peak RSS **{decode['peak_rss_mb']:.0f} MB**"
        )
        long_episode.unlink()
        emit()
    if not args.no_score:
        trained = _child(["train", str(args.data)], env)
        training = f"{trained['wall_s']:.1f} s" if trained["trained"] else "models reused"
        lines.append(f"- training (local profile, RAVDESS): {training}")
        emit()
        score = _child(["score", str(episode), str(len(ACTORS))], env)
        spans, labels, predictions = _segments_from_warehouse(home, score["name"])
        lines += [
            f"- `inbox add` + `inbox run`: **{score['wall_s']:.1f} s** wall, peak RSS {score['peak_rss_mb']:.0f} MB "
            f"(children, e.g. the judge server: {score['children_peak_rss_mb']:.0f} MB); {len(spans)} segments, "
            f"{len({*labels})} speakers, {predictions} predictions",
            "- Dagster steps (s): " + ", ".join(f"{key} {value}" for key, value in score["steps"].items()),
            "- peak RSS by step (MB): " + ", ".join(f"{key} {value}" for key, value in score["step_peaks_mb"].items()),
            f"- segment recall (one segment per clip, boundaries within {TOLERANCE_S} s): "
            f"**{segment_recall(spans, reference):.3f}**; reference speech inside segments "
            f"{speech_covered(spans, reference, seconds):.3f}",
            f"- frame ARI of the run's speakers (`--speakers {len(ACTORS)}`): "
            f"**{frame_ari(spans, labels, reference, seconds):.3f}**",
        ]
        emit()
        daemon = _child(["daemon", str(episode), args.daemon], env)
        daemon_spans, daemon_labels, _ = _segments_from_warehouse(home, daemon["name"])
        lines += [
            f"- daemon path ({'`emojudge ui`' if args.daemon == 'ui' else 'dagster-daemon alone'}, inbox sensor, the "
            "score job's executor; no speaker count): "
            f"**{daemon['wall_s']:.1f} s** from the drop to the run's end (the daemon ticked the inbox sensor "
            f"{daemon['ready_s']:.0f} s after its start, then the file was dropped; the sensor takes a file "
            f"once it held still for 10 s), {daemon['decodes']} decode(s) of the episode across the run's "
            f"processes; frame ARI "
            f"{frame_ari(daemon_spans, daemon_labels, reference, seconds):.3f}",
            "- daemon path's phases (s): " + ", ".join(f"{key} {value:.1f}" for key, value in daemon["phases"].items()),
            "- daemon run's steps (s): " + ", ".join(f"{key} {value}" for key, value in daemon["steps"].items()),
            "",
            f"inbox: hour cli={score['wall_s']:.0f}s daemon={daemon['wall_s']:.0f}s "
            f"recall={segment_recall(spans, reference):.3f} decodes={daemon['decodes']}",
        ]
    if not args.no_ami:
        lines += _ami_lines(env)
    emit()


def _ami_lines(env: dict[str, str]) -> list[str]:
    import pandas as pd

    table = pd.DataFrame(_child(["ami"], env)["rows"])
    means = table.groupby("range")[["segments", "recall", "covered", "ari_count", "ari_no_count"]].mean()
    return [
        "",
        "AMI excerpts (mean of 10; ARI over the excerpts with two or more reference speakers in segment frames):",
        "",
        means.round(3).to_markdown(),
        "",
        "Per excerpt:",
        "",
        table.round(3).to_markdown(index=False),
    ]


if __name__ == "__main__":
    main()
