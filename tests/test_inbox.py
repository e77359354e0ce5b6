"""The podcast inbox: the sensor's file logic, and episodes built from RAVDESS scored end to end by `emojudge inbox`.

The end-to-end part trains the demo models once (acoustic frames, a tiny RoBERTa, short training, the openai-chat
judge against the scripted local server, as tests/test_pipeline_e2e.py does), then adds a corrupt file, a stereo
44.1 kHz WAV episode with a VTT sidecar and an MP3 episode, and scores them with `emojudge inbox run`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
import librosa
import numpy as np
import pytest
import soundfile as sf
from batch_api_server import FakeOpenAIServer
from test_episodes import _write_mp3
from tiny_models import demo_training_env

from emojudge_models.episodes.inbox import scan_inbox, stale_episodes
from emojudge_models.episodes.ingest import ingest_episode
from emojudge_models.episodes.speakers import SpeakerHint
from emojudge_models.loaded_models import models_kept
from emojudge_models.store import warehouse
from emojudge_pipeline import cli, sensors
from emojudge_pipeline.assets.ingest import _speakers_hint
from emojudge_pipeline.resources import InboxResource, WarehouseResource
from emojudge_pipeline.sensors import RESCORE_JOB, RESCORE_KEEPS, inbox_sensor, rescore_schedule, rescore_sensor

BUILD_SR = 44_100


# --- the sensor's file logic -------------------------------------------------------------------------------------


SETTLE_S = 0.3
"""The tests' EMOJUDGE_INBOX_SETTLE_S: how long a file holds still before the sensor takes it."""


class Ticks:
    """Evaluates the inbox sensor like the daemon does: one tick at a time, keeping the cursor between ticks;
    ``settled=True`` waits the settle time first. ``wait_s``: the sensor's :data:`~sensors.SETTLE_WAIT_S` (0: each
    tick only looks, so a test sees the rule tick by tick)."""

    def __init__(self, home: Path, inbox: Path, wait_s: float = 0.0) -> None:
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = {
            "warehouse_db": WarehouseResource(home=str(home)),
            "inbox": InboxResource(folder=str(inbox), settle_s=SETTLE_S),
        }
        self.cursor: str | None = None
        self.wait_s = wait_s

    def __call__(self, settled: bool = False) -> list[dg.RunRequest]:
        if settled:
            time.sleep(SETTLE_S)
        context = dg.build_sensor_context(cursor=self.cursor, instance=self.instance, resources=self.resources)
        with mock.patch.object(sensors, "SETTLE_WAIT_S", self.wait_s):
            result = inbox_sensor(context)
        if isinstance(result, dg.SkipReason):
            self.cursor = context.cursor
            return []
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return list(result.run_requests)


def _touch_later(path: Path) -> None:
    """Move the file's mtime forward (file systems with coarse timestamps would otherwise hide a rewrite)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_inbox_sensor_takes_stable_new_bytes_once(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    inbox.mkdir()
    tick = Ticks(home, inbox)
    first = inbox / "show.mp3"
    first.write_bytes(b"episode one " * 1000)
    (inbox / "show.vtt").write_text("WEBVTT\n")  # a sidecar is not an episode
    assert tick() == [], "a file seen once may still be copying"
    [request] = tick(settled=True)
    sha = hashlib.sha256(first.read_bytes()).hexdigest()
    assert (request.run_key, request.partition_key) == (sha, f"ep-{sha[:12]}")
    assert tick.instance.get_dynamic_partitions("eval_sets") == [f"ep-{sha[:12]}"]
    with warehouse.connect(home, read_only=True) as con:
        assert con.execute("SELECT name, format, path FROM eval_sets").fetchall() == [
            (f"ep-{sha[:12]}", "episode", str(first.resolve()))
        ]
    assert tick() == []

    shutil.copy(first, inbox / "renamed.mp3")
    assert tick() == [] and tick(settled=True) == [], "the same bytes under another name are not a new episode"

    growing = inbox / "growing.wav"
    growing.write_bytes(b"part one")
    assert tick() == []
    with growing.open("ab") as handle:
        handle.write(b" and part two")
    _touch_later(growing)
    assert tick(settled=True) == [], "a file that grew since the last tick waits"
    [grown] = tick(settled=True)
    assert grown.run_key == hashlib.sha256(b"part one and part two").hexdigest()

    first.write_bytes(b"episode one, edited " * 1000)
    _touch_later(first)
    assert tick() == []
    [edited] = tick(settled=True)
    assert edited.run_key not in (sha, grown.run_key) and edited.partition_key == f"ep-{edited.run_key[:12]}"
    assert tick() == []
    assert json.loads(tick.cursor)["files"].keys() == {"show.mp3", "renamed.mp3", "growing.wav"}


def test_a_file_about_to_settle_is_taken_in_the_same_tick_once_it_held_still(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    inbox.mkdir()
    tick = Ticks(home, inbox, wait_s=SETTLE_S / 2)
    show = inbox / "show.mp3"
    show.write_bytes(b"episode " * 1000)
    written = time.time() - SETTLE_S * 0.7  # due to settle 0.09 s from now, within the tick's wait
    os.utime(show, (written, written))
    [request] = tick()
    assert time.time() >= written + SETTLE_S, "taken in this tick, and only once it held still"
    assert request.run_key == hashlib.sha256(show.read_bytes()).hexdigest()

    later = inbox / "later.mp3"
    later.write_bytes(b"later " * 1000)
    ahead = time.time() + 60  # an mtime ahead proves nothing: it settles SETTLE_S after the scan first sees it
    os.utime(later, (ahead, ahead))
    started = time.monotonic()
    assert tick() == [] and time.monotonic() - started < SETTLE_S / 2, "not due within the wait: left to a later tick"
    [taken] = tick(settled=True)
    assert taken.run_key == hashlib.sha256(later.read_bytes()).hexdigest()

    growing = inbox / "growing.wav"
    growing.write_bytes(b"part one")
    time.sleep(SETTLE_S * 0.6)
    writer = threading.Timer(SETTLE_S * 0.15, lambda: growing.write_bytes(b"part one, part two"))
    writer.start()
    assert tick() == [], "written again during the wait: not settled after all"
    writer.join()
    [grown] = tick(settled=True)
    assert grown.run_key == hashlib.sha256(b"part one, part two").hexdigest()


def test_scan_forgets_removed_files_but_not_their_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.flac").write_bytes(b"abc")
    now = time.time()
    cursor = scan_inbox(tmp_path, scan_inbox(tmp_path, None, 10.0, now).cursor, 10.0, now + 10).cursor
    (tmp_path / "a.flac").rename(tmp_path / "b.flac")
    first = scan_inbox(tmp_path, cursor, 10.0, now + 1)
    second = scan_inbox(tmp_path, first.cursor, 10.0, now + 11)
    assert [p.name for p in first.waiting] == ["b.flac"] and second.ready == [] and second.waiting == []


# --- episodes end to end ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    wav: Path
    mp3: Path
    corrupt: Path
    clips: list[tuple[str, float, float, str]]
    """(speaker, start_s, end_s, transcript) of each RAVDESS clip in the built episode."""


def _build_episode(ravdess_dir: Path, root: Path) -> Built:
    """Two actors, two turns each of three clips (about 40 s), stereo 44.1 kHz WAV with a VTT sidecar, and an MP3.

    Clips are 0.5 s apart, turns 3 s apart: more than the 2 s gap segments may bridge, so no segment spans two
    speakers."""
    rows = list(csv.DictReader((ravdess_dir / "manifest.csv").open(encoding="utf-8")))
    actors = ("ravdess_actor01", "ravdess_actor02")
    queues = {actor: [row for row in rows if row["speaker_id"] == actor] for actor in actors}
    parts = [np.zeros(BUILD_SR, dtype=np.float32)]
    position = BUILD_SR
    clips = []
    for _turn in range(2):
        for actor in actors:
            for _ in range(3):
                row = queues[actor].pop(0)
                wave, _ = librosa.load(ravdess_dir / row["path"], sr=BUILD_SR)
                _, (start, end) = librosa.effects.trim(wave, top_db=30)
                wave = wave[start:end]
                clips.append((actor, position / BUILD_SR, (position + len(wave)) / BUILD_SR, row["transcript"]))
                gap = np.zeros(int(0.5 * BUILD_SR), dtype=np.float32)
                parts += [wave, gap]
                position += len(wave) + len(gap)
            parts.append(np.zeros(int(2.5 * BUILD_SR), dtype=np.float32))
            position += int(2.5 * BUILD_SR)
    mono = np.concatenate(parts)
    stereo = np.stack([mono, 0.8 * mono], axis=1)
    source = root / "source"
    source.mkdir()
    sf.write(source / "interview.wav", stereo, BUILD_SR)
    cues = [f"{_stamp(start)} --> {_stamp(end)}\n{text}\n" for _, start, end, text in clips]
    (source / "interview.vtt").write_text("WEBVTT\n\n" + "\n".join(cues))
    _write_mp3(source / "rerun.mp3", stereo[: int(20 * BUILD_SR)], BUILD_SR)
    (source / "broken.mp3").write_bytes(b"ID3" + bytes(range(256)) * 40)
    return Built(source / "interview.wav", source / "rerun.mp3", source / "broken.mp3", clips)


def _stamp(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"00:{int(minutes):02d}:{rest:06.3f}"


@pytest.fixture(scope="module")
def scored(ravdess_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Demo models trained once; then the three files added with `inbox add` and scored with `inbox run`."""
    root = tmp_path_factory.mktemp("inbox-e2e")
    home = root / "home"
    built = _build_episode(ravdess_dir, root)
    manifest, training = demo_training_env(root, max_epochs=3)
    env = {
        "EMOJUDGE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        **training,
        "EMOJUDGE_SEGMENT_MIN_S": "1.5",
        "EMOJUDGE_SEGMENT_MAX_S": "4.5",
        "EMOJUDGE_INBOX_SETTLE_S": str(SETTLE_S),
    }
    with pytest.MonkeyPatch.context() as patch, FakeOpenAIServer(max_lifetime_s=600) as api:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setenv("EMOJUDGE_JUDGE_BASE_URL", api.base_url)
        cli.add_eval_set("demo", manifest, "manifest")
        cli.materialize("demo", train=True)
        judged_before = len(api.chat_bodies)
        work = AudioWork(patch)
        with pytest.raises(SystemExit) as refused:
            cli.main(["inbox", "add", "--speakers", "0", str(built.wav)])
        assert refused.value.code == 2 and not (home / "inbox" / "interview.wav").exists()
        added = _cli_lines(["inbox", "add", "--speakers", "2", str(built.corrupt), str(built.wav), str(built.mp3)])
        releases = ModelReleases(patch)
        ran = _cli_lines(["inbox", "run"])
        kept_after_run = models_kept()
        listed = _cli_lines(["inbox", "list"])
        again = _cli_lines(["inbox", "run"])
        yield {
            "home": home,
            "built": built,
            "added": added,
            "ran": ran,
            "listed": listed,
            "again": again,
            "decodes": work.counts["decodes"],
            "models_released": releases.count,
            "models_kept_after_run": kept_after_run,
            "judged": len(api.chat_bodies) - judged_before,
        }


def _cli_lines(argv: list[str]) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(argv)
    return out.getvalue().splitlines()


def _outcomes(lines: list[str]) -> dict[str, str]:
    """Each episode's outcome from the lines `inbox run` printed (materialize reports its runs too)."""
    return dict(line.split(None, 1) for line in lines if line.startswith("ep-"))


def _names(scored) -> dict[str, str]:
    """Set name of each added file, by file name, from the lines `inbox add` printed."""
    return {Path(line.split()[1]).name: line.split()[0] for line in scored["added"]}


def test_add_registers_each_file_as_an_episode_set_in_the_inbox(scored) -> None:
    names = _names(scored)
    assert set(names) == {"broken.mp3", "interview.wav", "rerun.mp3"}
    assert all(name.startswith("ep-") and len(name) == 15 for name in names.values())
    inbox = scored["home"] / "inbox"
    assert (inbox / "interview.vtt").is_file(), "the sidecar travels with its episode"
    with warehouse.connect(scored["home"], read_only=True) as con:
        rows = con.execute("SELECT name, format, speakers_hint FROM eval_sets WHERE format = 'episode'").fetchall()
    assert sorted(rows) == sorted((name, "episode", 2) for name in names.values())


def test_a_corrupt_file_is_rejected_and_the_next_ones_scored(scored) -> None:
    names = _names(scored)
    ran = _outcomes(scored["ran"])
    assert ran[names["broken.mp3"]].startswith("rejected: cannot open as audio")
    assert ran[names["rerun.mp3"]].startswith("scored (")
    with warehouse.connect(scored["home"], read_only=True) as con:
        rejected = con.execute(
            "SELECT stage, audio_path FROM rejected_inputs WHERE eval_set = ?", [names["broken.mp3"]]
        ).fetchall()
        left = con.execute("SELECT count(*) FROM utterances WHERE eval_set = ?", [names["broken.mp3"]]).fetchone()[0]
        segments = con.execute(
            "SELECT count(*) FROM utterances WHERE eval_set = ?", [names["interview.wav"]]
        ).fetchone()[0]
    assert rejected == [("ingest", str(scored["home"] / "inbox" / "broken.mp3"))] and left == 0
    assert ran[names["interview.wav"]] == f"scored ({segments} segments, 2 speakers)"
    home_line, _header, *rows = scored["listed"]
    assert home_line == f"home: {scored['home']}"
    states = {line.split()[0]: line.split()[1] for line in rows}
    assert states == {names["broken.mp3"]: "rejected", names["interview.wav"]: "scored", names["rerun.mp3"]: "scored"}
    assert scored["again"] == ["no pending episodes"]


def test_segments_have_speakers_sidecar_transcripts_and_predictions(scored) -> None:
    names = _names(scored)
    wav, mp3 = names["interview.wav"], names["rerun.mp3"]
    with warehouse.connect(scored["home"], read_only=True) as con:
        segments = con.execute(
            "SELECT u.eval_set, u.utterance_id, u.speaker_id, u.start_s, u.end_s, u.transcript_source, u.audio_path, "
            "u.audio_sha256, u.episode_sha256, u.language, u.language_probability, v.final_label "
            "FROM utterances u JOIN v_predictions v "
            "USING (eval_set, utterance_id) WHERE u.eval_set IN (?, ?) ORDER BY u.eval_set, u.start_s",
            [wav, mp3],
        ).df()
        speakers = con.execute(
            "SELECT eval_set, speaker_id, n_segments, len(centroid) FROM speakers ORDER BY 1, 2"
        ).fetchall()
        predictions = dict(
            con.execute(
                "SELECT eval_set, count(*) FROM predictions WHERE eval_set IN (?, ?) GROUP BY 1", [wav, mp3]
            ).fetchall()
        )
    from emojudge_models.episodes.segment import segment_audio_sha256

    interview = segments[segments["eval_set"] == wav]
    assert len(interview) >= 8 and predictions[wav] == len(interview) and predictions[mp3] > 0
    assert set(interview["speaker_id"]) == {f"{wav}:S1", f"{wav}:S2"}
    assert (interview["transcript_source"] == "sidecar").mean() >= 0.9
    assert segments.loc[segments["eval_set"] == mp3, "transcript_source"].str.startswith("asr:").all()
    assert (segments["audio_path"].map(lambda p: Path(p).parent) == scored["home"] / "inbox").all()
    for row in segments.itertuples():
        assert row.audio_sha256 == segment_audio_sha256(row.episode_sha256, row.start_s, row.end_s)
        assert row.final_label is not None
    mp3_segments = segments[segments["eval_set"] == mp3]
    assert (mp3_segments["language"] == "en").all(), "English speech, detected once per speaker"
    per_speaker = mp3_segments.groupby("speaker_id")["language_probability"].nunique()
    assert (per_speaker == 1).all() and (mp3_segments["language_probability"] > 0.5).all()
    first_turn_end = scored["built"].clips[2][2]
    turn_ids = interview[interview["end_s"] <= first_turn_end + 0.5]["speaker_id"].unique()
    assert len(turn_ids) == 1, "the first actor's turn is one speaker"
    assert [s for s in speakers if s[0] == wav] == [
        (wav, f"{wav}:S1", int((interview["speaker_id"] == f"{wav}:S1").sum()), 256),
        (wav, f"{wav}:S2", int((interview["speaker_id"] == f"{wav}:S2").sum()), 256),
    ]


def test_segments_are_read_from_one_decode_per_episode(scored) -> None:
    """Ingest's decode is kept: features, ASR and prosody cut every segment from it. Three files, three decodes (the
    corrupt one's attempt included); the second `inbox run` finds nothing pending and decodes nothing."""
    assert scored["decodes"] == 3


def test_each_step_releases_the_models_it_loaded(scored) -> None:
    """A scoring run's steps share one process: the voice encoder, the Whisper models and the text encoder are
    released when the step that loaded them ends, so the run holds one step's models at a time and none after it."""
    assert scored["models_released"] >= 6
    assert scored["models_kept_after_run"] == 0


def test_inbox_judge_scope_asks_only_about_disagreements(scored) -> None:
    names = _names(scored)
    with warehouse.connect(scored["home"], read_only=True) as con:
        judged, disagreements = con.execute(
            "SELECT count(j.custom_id), count(*) FILTER (NOT f.modalities_agree) FROM fused_predictions f "
            "LEFT JOIN llm_judgments j USING (eval_set, utterance_id) "
            "WHERE f.task = 'categorical' AND f.eval_set IN (?, ?)",
            [names["interview.wav"], names["rerun.mp3"]],
        ).fetchone()
    assert judged == disagreements == scored["judged"]


def test_episode_emotions_timeline_rows_view_and_png(scored) -> None:
    names = _names(scored)
    wav = names["interview.wav"]
    with warehouse.connect(scored["home"], read_only=True) as con:
        rows = con.execute("SELECT * FROM episode_emotions WHERE eval_set = ? ORDER BY 4, 3", [wav]).df()
        spoken = con.execute("SELECT sum(end_s - start_s) FROM utterances WHERE eval_set = ?", [wav]).fetchone()[0]
        view = con.execute(
            "SELECT speaker_id, window_start_s, dominant_emotion, episode_path FROM v_episode_timeline "
            "WHERE eval_set = ? ORDER BY 2, 1",
            [wav],
        ).fetchall()
        fusion_key = con.execute(
            "SELECT DISTINCT fusion_model_key FROM fused_predictions WHERE eval_set = ? AND task = 'categorical'",
            [wav],
        ).fetchall()
        segments = con.execute(
            "SELECT s.start_s, s.end_s, s.speaker, s.label, s.confidence, p.final_label, p.fused_probability, "
            "p.start_s FROM v_episode_segments s JOIN v_predictions p "
            "ON p.eval_set = s.episode_id AND p.utterance_id = s.segment_id WHERE s.episode_id = ? ORDER BY 1",
            [wav],
        ).fetchall()
        cut = con.execute(
            "SELECT count(*) FROM utterances WHERE eval_set = ? AND start_s IS NOT NULL", [wav]
        ).fetchone()
    assert len(segments) == cut[0] > 0, "one row per segment"
    assert all(start < end and label == final for start, end, _, label, _, final, _, _ in segments)
    assert all(0 < confidence <= 1 for *_, confidence, _, _, _ in segments)
    assert all(p_start == start for start, *_, p_start in segments), "v_predictions carries the segment's times"
    assert {speaker for _, _, speaker, *_ in segments} == {f"{wav}:S1", f"{wav}:S2"}
    shares = rows[[c for c in rows.columns if c.startswith("share_")]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, atol=1e-6)
    assert rows["speech_s"].sum() == pytest.approx(spoken, abs=1e-6)
    assert set(rows["window_start_s"]) == {0.0, 30.0} and (rows["window_end_s"] - rows["window_start_s"] == 30).all()
    assert set(rows["speaker_id"]) == {f"{wav}:S1", f"{wav}:S2"}
    assert rows["fusion_model_key"].unique().tolist() == [fusion_key[0][0]]
    assert len(view) == len(rows) and all(v[2] is not None and v[3].endswith("interview.wav") for v in view)
    records = (
        cli.instance()
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("episode_emotions"), asset_partitions=[wav]), limit=1
        )
        .records
    )
    assert records
    metadata = records[0].asset_materialization.metadata
    assert metadata["timeline"].value.startswith("![plot](data:image/png;base64,iVBOR")
    assert metadata["windows"].value == len(rows)
    picture = Path(metadata["timeline_png"].value)
    assert picture == scored["home"] / "episodes" / "timelines" / f"{wav}.png"
    assert picture.read_bytes().startswith(b"\x89PNG") and not picture.with_name(picture.name + ".partial").exists()
    assert not list(picture.parent.glob(".*.partial")), "the picture's temporary file was renamed into place"
    for speaker in (f"{wav}:S1", f"{wav}:S2"):
        assert re.fullmatch(r"\d+\.\d s: [a-z]+ \d+%(, [a-z]+ \d+%){0,2}", metadata[f"speaker {speaker}"].value)


class AudioWork:
    """Counts, while active, every episode opened for decoding, every Silero VAD pass and every voice vector."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from emojudge_models.episodes import decode, segment, speakers

        self.counts = {"decodes": 0, "vad": 0, "voice_vectors": 0}
        opened = decode.EpisodeReader.__init__
        vad, embed = segment.get_speech_timestamps, speakers._embed

        def counting_open(reader, *args, **kwargs) -> None:
            self.counts["decodes"] += 1
            opened(reader, *args, **kwargs)

        def counting_vad(*args, **kwargs):
            self.counts["vad"] += 1
            return vad(*args, **kwargs)

        def counting_embed(wave, segments, encoder):
            self.counts["voice_vectors"] += len(segments)
            return embed(wave, segments, encoder)

        monkeypatch.setattr(decode.EpisodeReader, "__init__", counting_open)
        monkeypatch.setattr(segment, "get_speech_timestamps", counting_vad)
        monkeypatch.setattr(speakers, "_embed", counting_embed)


class ModelReleases:
    """Counts, while active, the models the step hooks release."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from emojudge_pipeline import hooks

        self.count = 0
        release = hooks.release_loaded_models

        def counting_release() -> int:
            released = release()
            self.count += released
            return released

        monkeypatch.setattr(hooks, "release_loaded_models", counting_release)


def _utterance_rows(home: Path, eval_set: str) -> list[tuple]:
    with warehouse.connect(home, read_only=True) as con:
        return con.execute(
            "SELECT utterance_id, speaker_id, start_s, end_s, transcript, run_id FROM utterances WHERE eval_set = ? "
            "ORDER BY utterance_id",
            [eval_set],
        ).fetchall()


def test_running_a_scored_episode_again_reuses_its_segments_and_speakers(scored, monkeypatch) -> None:
    """`emojudge materialize` of a scored episode: the ingest finds the same bytes and settings (ingest_key) and keeps
    its rows: no VAD, no voice vectors, no decode (every step maps the episode the first run's ingest decoded)."""
    mp3 = _names(scored)["rerun.mp3"]
    home = scored["home"]
    before = _utterance_rows(home, mp3)
    with warehouse.connect(home, read_only=True) as con:
        [(key,)] = con.execute("SELECT ingest_key FROM eval_sets WHERE name = ?", [mp3]).fetchall()
    assert json.loads(key)["channels"] == "mix" and json.loads(key)["segment_max_s"] == 4.5
    work = AudioWork(monkeypatch)
    _cli_lines(["materialize", mp3, "--no-train"])
    assert work.counts == {"decodes": 0, "vad": 0, "voice_vectors": 0}
    assert _utterance_rows(home, mp3) == before, "the rows stand, run_id included"
    latest = cli.instance().get_latest_materialization_event(dg.AssetKey("utterances")).asset_materialization
    assert latest.partition == mp3 and latest.metadata["reused"].value is True
    assert latest.metadata["segments"].value == len(before)


def test_a_newer_model_makes_episodes_stale_and_rescoring_reuses_every_feature(scored, monkeypatch) -> None:
    """Register a newer audio head (same checkpoint, new key): both episodes are stale; the rescore sensor asks for
    them; rescoring one decodes nothing (no VAD, no voice vectors), computes no feature and scores it with the new
    key; it is no longer stale, and its segments and speakers are the ones it had."""
    names = _names(scored)
    mp3, wav = names["rerun.mp3"], names["interview.wav"]
    home = scored["home"]
    with warehouse.connect(home) as con:
        assert stale_episodes(con) == []
        con.execute(
            "INSERT INTO model_registry BY NAME SELECT 'audio-head-v2' AS model_key, "
            "* EXCLUDE (model_key, created_at), current_timestamp + INTERVAL 1 SECOND AS created_at "
            "FROM model_registry "
            "WHERE kind = 'audio_head' AND task = 'categorical' ORDER BY created_at DESC LIMIT 1"
        )
        assert stale_episodes(con) == sorted([mp3, wav])
    context = dg.build_sensor_context(
        instance=cli.instance(), resources={"warehouse_db": WarehouseResource(home=str(home))}
    )
    requests = rescore_sensor(context)
    assert sorted(r.partition_key for r in requests) == sorted([mp3, wav])
    assert len({r.run_key for r in requests}) == 2
    again = [r.run_key for r in rescore_sensor(context)]
    assert again == [r.run_key for r in requests], "the same latest models, the same run keys: each runs once"
    resources = {"warehouse_db": WarehouseResource(home=str(home))}
    daily = rescore_schedule("0 3 * * *")(dg.build_schedule_context(instance=cli.instance(), resources=resources))
    assert sorted(r.partition_key for r in daily) == sorted([mp3, wav]) and {r.run_key for r in daily} == {None}
    from emojudge_pipeline.definitions import build_definitions

    job = build_definitions().resolve_job_def(RESCORE_JOB)
    assert {request.job_name for request in requests} <= {None, RESCORE_JOB}
    before = _utterance_rows(home, mp3)
    work = AudioWork(monkeypatch)
    result = job.execute_in_process(instance=cli.instance(), partition_key=mp3)
    assert result.success
    assert work.counts == {"decodes": 0, "vad": 0, "voice_vectors": 0}
    assert _utterance_rows(home, mp3) == before
    features = next(m for m in result.asset_materializations_for_node("audio_features") if m.partition == mp3).metadata
    assert features["computed"].value == 0 and features["reused"].value > 0
    text = next(m for m in result.asset_materializations_for_node("text_features") if m.partition == mp3).metadata
    assert text["computed"].value == 0
    assert {m.partition for m in result.asset_materializations_for_node("episode_emotions")} == {mp3}
    with warehouse.connect(home) as con:
        keys = con.execute(
            "SELECT DISTINCT model_key FROM logits WHERE eval_set = ? AND modality = 'audio' AND task = 'categorical'",
            [mp3],
        ).fetchall()
        assert keys == [("audio-head-v2",)]
        assert stale_episodes(con) == [wav]


# --- without models: registration and rejections ----------------------------------------------------------------


def test_inbox_automation_runs_by_default_and_rescoring_keeps_the_audio_assets(tmp_path: Path) -> None:
    """The inbox sensor, the rescore sensor and the daily schedule (EMOJUDGE_RESCORE_CRON) are on in the UI's
    Automation tab without any setup; rescoring runs every partitioned asset except the audio-only ones."""
    from emojudge_models.settings import Settings
    from emojudge_pipeline.definitions import build_definitions

    defs = build_definitions(Settings(home=tmp_path, rescore_cron="15 4 * * 1-5"))
    schedule = defs.resolve_schedule_def("rescore_episodes")
    assert (schedule.cron_schedule, schedule.job_name) == ("15 4 * * 1-5", RESCORE_JOB)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    for name, job in (("inbox_sensor", "score_eval_set"), ("rescore_sensor", RESCORE_JOB)):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.job_name == job
    graph = defs.resolve_asset_graph()
    partitioned = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).is_partitioned}
    rescored = {key.to_user_string() for key in defs.resolve_job_def(RESCORE_JOB).asset_layer.selected_asset_keys}
    assert rescored == partitioned - set(RESCORE_KEEPS)
    assert {"audio_features", "logits", "predictions", "episode_emotions"} <= rescored


def test_scoring_runs_keep_their_steps_in_one_process_on_one_machine(tmp_path: Path) -> None:
    """The inbox sensor's and the rescoring's runs execute in one process (a process per step only re-imports the
    pipeline and the models); runs of the other jobs keep Dagster's default (multiprocess) executor."""
    from emojudge_models.settings import Settings
    from emojudge_pipeline.definitions import build_definitions

    defs = build_definitions(Settings(home=tmp_path))
    executors = {job: defs.resolve_job_def(job).executor_def.name for job in ("score_eval_set", RESCORE_JOB)}
    assert executors == {"score_eval_set": "in_process", RESCORE_JOB: "in_process"}
    assert defs.resolve_job_def("materialize_eval_set").executor_def.name == "multi_or_in_process_executor"


@pytest.mark.reliability
def test_segment_sources_map_one_decode_and_refuse_changed_bytes_once_it_is_gone(tmp_path: Path) -> None:
    """Segments are cut from the episode's decoded file, keyed by the hash ingest recorded: decoded once, whoever
    asks; while that file exists a segment is the audio ingest saw; once retention removed it, bytes that no longer
    hash to the recorded SHA-256 are refused."""
    from emojudge_models.episodes.decoded import DecodedEpisodes
    from emojudge_models.episodes.sources import SegmentSource, audio_source, load_audio
    from emojudge_models.ingest.audio import AudioRejected

    path, decoded = tmp_path / "talk.wav", tmp_path / "decoded"
    t = np.arange(12 * 16_000) / 16_000
    sf.write(path, np.stack([np.sin(2 * np.pi * 220 * t), np.zeros_like(t)], axis=1).astype(np.float32), 16_000)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert audio_source(str(path), float("nan"), float("nan"), float("nan")) == str(path)
    source = audio_source(str(path), 2.0, 3.5, sha, None, decoded)
    first, second = load_audio(source), load_audio(SegmentSource(str(path), 10.0, 11.0, sha, None, str(decoded)))
    assert (len(first), len(second)) == (24_000, 16_000) and DecodedEpisodes(decoded).decodes(sha) == 1
    np.testing.assert_allclose(first[:100], 0.5 * np.sin(2 * np.pi * 220 * t[32_000:32_100]), atol=2e-3)
    with pytest.raises(AudioRejected, match=r"outside the 12\.00 s episode"):
        load_audio(SegmentSource(str(path), 12.5, 13.0, sha, None, str(decoded)))
    sf.write(path, np.zeros((12 * 16_000, 2), dtype=np.float32) + 0.1, 16_000)
    np.testing.assert_array_equal(load_audio(source), first)
    assert DecodedEpisodes(decoded).prune(keep_s=-1.0)
    with pytest.raises(AudioRejected, match="episode content changed since ingest"):
        load_audio(source)


def test_inbox_rejects_silent_and_overlong_episodes_without_any_model(
    emojudge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected episode's run skips every later asset, so no model is needed; re-adding the same bytes is a no-op
    and another file of the same name keeps both."""
    monkeypatch.setenv("EMOJUDGE_MAX_EPISODE_S", "15")
    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", str(SETTLE_S))
    drop = tmp_path / "drop"
    drop.mkdir()
    sf.write(drop / "silent.wav", np.zeros(12 * 16_000, dtype=np.float32), 16_000)
    sf.write(drop / "long.flac", 0.3 * np.sin(np.arange(20 * 16_000) / 10).astype(np.float32), 16_000)
    first = _cli_lines(["inbox", "add", str(drop / "silent.wav"), str(drop / "long.flac")])
    assert _cli_lines(["inbox", "add", str(drop / "silent.wav")]) == first[:1]
    other = tmp_path / "other" / "silent.wav"
    other.parent.mkdir()
    sf.write(other, np.zeros(11 * 16_000, dtype=np.float32), 16_000)
    [renamed] = _cli_lines(["inbox", "add", str(other)])
    assert Path(renamed.split()[1]).name == f"silent-{renamed.split()[0][3:]}.wav"
    ran = _outcomes(_cli_lines(["inbox", "run"]))
    silent, long, quieter = (line.split()[0] for line in [*first, renamed])
    assert ran == {
        silent: "rejected: all silence (peak below -80 dBFS)",
        long: "rejected: header says 20.0 s, longer than the 15 s limit (EMOJUDGE_MAX_EPISODE_S)",
        quieter: "rejected: all silence (peak below -80 dBFS)",
    }
    with warehouse.connect(emojudge_home, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM utterances").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM rejected_inputs WHERE stage = 'ingest'").fetchone()[0] == 3
    assert _cli_lines(["inbox", "run"]) == ["no pending episodes"]


def test_speaker_bounds_given_to_inbox_add_are_stored_and_kept_by_ingest(
    emojudge_home: Path, ravdess_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`inbox add --min-speakers/--max-speakers` registers the bounds with the episode (a contradiction is refused in
    one line and nothing is copied), and the episode's ingest keeps the speaker count within them."""
    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", str(SETTLE_S))
    rows = list(csv.DictReader((ravdess_dir / "manifest.csv").open(encoding="utf-8")))
    parts = []
    for row in [r for r in rows if r["speaker_id"] == "ravdess_actor01"][:3] + [
        r for r in rows if r["speaker_id"] == "ravdess_actor02"
    ][:3]:
        wave, _ = librosa.load(ravdess_dir / row["path"], sr=16_000)
        parts += [wave, np.zeros(12_000, dtype=np.float32)]
    pair = tmp_path / "pair.wav"
    sf.write(pair, np.concatenate(parts), 16_000)
    with pytest.raises(SystemExit) as refused:
        cli.main(["inbox", "add", "--min-speakers", "3", "--max-speakers", "2", str(pair)])
    assert refused.value.code == 2 and not (emojudge_home / "inbox" / "pair.wav").exists()
    assert "--min-speakers 3 is above --max-speakers 2" in capsys.readouterr().err
    louder = tmp_path / "louder.wav"
    sf.write(louder, 0.9 * np.concatenate(parts), 16_000)
    [one] = _cli_lines(["inbox", "add", "--max-speakers", "1", str(pair)])
    [three] = _cli_lines(["inbox", "add", "--min-speakers", "3", "--max-speakers", "4", str(louder)])
    found = []
    for line, hint in ((one, SpeakerHint(None, None, 1)), (three, SpeakerHint(None, 3, 4))):
        name = line.split()[0]
        with warehouse.connect(emojudge_home, read_only=True) as con:
            registered = con.execute(warehouse.sql_text("ingest/eval_set.sql"), [name]).df().iloc[0].to_dict()
        assert _speakers_hint(registered) == hint
        result = ingest_episode(Path(registered["path"]), name, speakers=hint)
        found.append(result.utterances["speaker_id"].nunique())
    assert found[0] == 1 and 3 <= found[1] <= 4


def test_recurring_speakers_example_matches_the_same_voices_across_episodes(scored) -> None:
    """The MP3 is the WAV's first 20 s: each of its speakers' closest voice in the WAV is the same actor."""
    names = _names(scored)
    wav, mp3 = names["interview.wav"], names["rerun.mp3"]
    with warehouse.connect(scored["home"], read_only=True) as con:
        matches = con.execute(warehouse.sql_text("examples/recurring_speakers.sql")).fetchall()
        cross = con.execute(
            "SELECT max(list_cosine_similarity(a.centroid, b.centroid)) FROM speakers a JOIN speakers b "
            "ON a.eval_set = ? AND b.eval_set = ? AND right(a.speaker_id, 2) <> right(b.speaker_id, 2)",
            [mp3, wav],
        ).fetchone()[0]
    closest = {(row[1], row[3]): row[4] for row in matches if row[0] == mp3}
    assert set(closest) == {(f"{mp3}:S1", f"{wav}:S1"), (f"{mp3}:S2", f"{wav}:S2")}
    assert min(closest.values()) > cross


def test_inbox_help_loads_no_heavy_module() -> None:
    from test_cli import run_cli

    done = run_cli("inbox", "add", "--help")
    assert done.returncode == 0, done.stderr
    assert "--speakers" in done.stdout and "--max-speakers" in done.stdout
    assert done.stdout.strip().endswith("heavy: none")


READ_SEGMENTS = """
import sys
from emojudge_models.episodes.sources import SegmentSource, load_audio
path, sha, folder, start = sys.argv[1:5]
for offset in range(5):
    wave = load_audio(SegmentSource(path, float(start) + offset, float(start) + offset + 0.5, sha, None, folder))
    assert len(wave) == 8000
print("ok")
"""


@pytest.mark.reliability
def test_step_processes_reading_one_episode_at_once_decode_it_once(tmp_path: Path) -> None:
    """Three processes (as the step processes of a multiprocess run) cut segments of the same episode at the same
    time: one decodes it under the episode's lock, the others map its file; decodes.log counts one decode."""
    from emojudge_models.episodes.decoded import DecodedEpisodes

    path, decoded = tmp_path / "long.flac", tmp_path / "decoded"
    t = np.arange(30 * 16_000) / 16_000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16_000)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READ_SEGMENTS, str(path), sha, str(decoded), str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (1, 8, 15)
    ]
    outputs = [reader.communicate(timeout=120) for reader in readers]
    assert [reader.returncode for reader in readers] == [0, 0, 0], [err[-500:] for _, err in outputs]
    assert DecodedEpisodes(decoded).decodes(sha) == 1
    assert [p.name for p in decoded.glob("*.f32")] == [f"{sha}-mix.f32"]
