"""Registration checks (`emojudge eval-set add`): CSV encodings, required columns, layout, audio present, set
names; and the one-line errors (exit status 2) the real `emojudge` command gives for each misuse."""

from __future__ import annotations

import codecs
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import tone

from emojudge_models.ingest.tables import CorpusInvalid, sniff_encoding
from emojudge_models.ingest.utterances import ingest_corpus
from emojudge_models.ingest.validate import check_corpus, check_eval_set, check_set_name

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
ROWS = [
    ("utterance_id", "path", "emotion", "transcript", "speaker_id"),
    ("café", "audio/a.wav", "happy", "ça va, très bien", "s1"),
    ("b", "audio/b.wav", "sad", "naïve - résumé", "s2"),
    ("c", "audio/c.flac", "neutral", "plain words", "s3"),
]


def _write_corpus(root: Path, encoding: str = "utf-8", bom: bytes = b"") -> Path:
    """A three-clip manifest corpus whose manifest.csv is written in ``encoding`` (with ``bom`` in front)."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    sf.write(root / "audio" / "a.wav", tone(1.0), 16_000)
    sf.write(root / "audio" / "b.wav", tone(1.2, f0=220.0), 16_000)
    sf.write(root / "audio" / "c.flac", tone(0.9, f0=140.0), 16_000)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(ROWS)
    text = buffer.getvalue()
    (root / "manifest.csv").write_bytes(bom + text.encode(encoding))
    return root


ENCODINGS = {
    "utf-8 with BOM": ("utf-8", codecs.BOM_UTF8),
    "utf-16 LE with BOM": ("utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16 BE with BOM": ("utf-16-be", codecs.BOM_UTF16_BE),
    "utf-16 LE without BOM": ("utf-16-le", b""),
    "utf-16 BE without BOM": ("utf-16-be", b""),
}


@pytest.mark.parametrize("label", ENCODINGS)
def test_encoded_manifest_ingests_the_same_rows_as_utf8(tmp_path: Path, label: str) -> None:
    encoding, bom = ENCODINGS[label]
    expected = ingest_corpus(_write_corpus(tmp_path / "utf8"), "manifest").utterances
    corpus = _write_corpus(tmp_path / "other", encoding, bom)
    assert check_corpus(corpus).corpus_format == "manifest" and check_corpus(corpus).audio_files == 3
    result = ingest_corpus(corpus, "manifest")
    assert result.rejections == []
    got = result.utterances
    assert list(got["utterance_id"]) == ["café", "b", "c"]
    assert list(got["transcript"]) == ["ça va, très bien", "naïve - résumé", "plain words"]
    pd.testing.assert_frame_equal(
        got.drop(columns=["audio_path"]), expected.drop(columns=["audio_path"]), check_dtype=False
    )


def test_msp_labels_in_utf16_read_like_utf8(msp_corpus: Path) -> None:
    labels = msp_corpus / "Labels" / "labels_consensus.csv"
    expected = ingest_corpus(msp_corpus, "msp", max_duration_s=5.0).utterances
    labels.write_bytes(codecs.BOM_UTF16_LE + labels.read_text().encode("utf-16-le"))
    assert sniff_encoding(labels.read_bytes()) == "utf-16-le"
    got = ingest_corpus(msp_corpus, "msp", max_duration_s=5.0).utterances
    pd.testing.assert_frame_equal(got, expected)


def test_other_encodings_are_refused_naming_the_file(tmp_path: Path) -> None:
    corpus = _write_corpus(tmp_path / "latin1", "latin-1")
    with pytest.raises(CorpusInvalid) as caught:
        check_corpus(corpus)
    message = str(caught.value)
    assert message.startswith(f"{corpus / 'manifest.csv'}: not readable as UTF-8") and "\n" not in message
    with pytest.raises(CorpusInvalid, match="not readable as UTF-8"):
        ingest_corpus(corpus, "manifest")


def test_missing_path_column_is_named(tmp_path: Path) -> None:
    corpus = _write_corpus(tmp_path / "c")
    (corpus / "manifest.csv").write_text("utterance_id,file,emotion\nx,audio/a.wav,happy\n")
    with pytest.raises(CorpusInvalid) as caught:
        check_corpus(corpus)
    assert str(caught.value) == (
        f"{corpus / 'manifest.csv'}: missing required column(s) path (found: utterance_id, file, emotion)"
    )


def test_manifest_needs_only_path(tmp_path: Path) -> None:
    corpus = _write_corpus(tmp_path / "c")
    (corpus / "manifest.csv").write_text("path\naudio/a.wav\naudio/c.flac\n")
    result = ingest_corpus(corpus, "manifest")
    assert sorted(result.utterances["utterance_id"]) == ["audio__a", "audio__c"] and result.rejections == []


def test_format_must_match_the_layout(tmp_path: Path, msp_corpus: Path) -> None:
    corpus = _write_corpus(tmp_path / "c")
    with pytest.raises(CorpusInvalid, match=r"--format msp needs Labels/labels_consensus\.csv .* manifest corpus"):
        check_corpus(corpus, "msp")
    with pytest.raises(CorpusInvalid, match=r"--format manifest needs a manifest\.csv .* msp corpus"):
        check_corpus(msp_corpus, "manifest")
    assert check_corpus(msp_corpus).corpus_format == "msp"
    assert check_corpus(corpus, "folder").audio_files == 3


def test_at_least_one_audio_file(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "notes.md").write_text("no audio here")
    (folder / "fake.wav").mkdir()
    with pytest.raises(CorpusInvalid, match="no audio files"):
        check_corpus(folder)
    corpus = _write_corpus(tmp_path / "c")
    (corpus / "manifest.csv").write_text("path\naudio/gone.wav\naudio/also-gone.wav\n")
    with pytest.raises(CorpusInvalid, match="none of the 2 listed audio files exists"):
        check_corpus(corpus)
    (corpus / "manifest.csv").write_text("path\n")
    with pytest.raises(CorpusInvalid, match="lists no usable clips"):
        check_corpus(corpus)


@pytest.mark.parametrize("name", ["", "two words", "../up", "x" * 101, "é", "..", "a/b", "tab\there"])
def test_bad_set_names_are_refused(name: str) -> None:
    with pytest.raises(CorpusInvalid, match="letters, digits"):
        check_set_name(name)


@pytest.mark.parametrize("name", ["demo", "MSP-Podcast_1.12", "x" * 100, "v.2"])
def test_good_set_names_pass(name: str, tmp_path: Path) -> None:
    assert check_eval_set(name, _write_corpus(tmp_path / "c")).audio_files == 3


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOJUDGE_", "DAGSTER_"))}
    env.update(
        EMOJUDGE_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def _emojudge(*args: str) -> list[str]:
    return [sys.executable, "-m", "emojudge_pipeline.cli", *args]


def _assert_one_error_line(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr[-3000:]
    assert done.stdout == ""


@pytest.mark.slow_fault
def test_cli_misuses_give_one_line_and_exit_2(tmp_path: Path) -> None:
    utf8 = _write_corpus(tmp_path / "utf8")
    latin1 = _write_corpus(tmp_path / "latin1", "latin-1")
    no_path = _write_corpus(tmp_path / "nopath")
    (no_path / "manifest.csv").write_text("utterance_id,file\nx,audio/a.wav\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "encoding": (["eval-set", "add", "latin", str(latin1)], f"{latin1 / 'manifest.csv'}: not readable as UTF-8"),
        "column": (["eval-set", "add", "nopath", str(no_path)], "missing required column(s) path"),
        "layout": (["eval-set", "add", "m", str(utf8), "--format", "msp"], "--format msp needs Labels/"),
        "no audio": (["eval-set", "add", "e", str(empty)], f"{empty}: no audio files"),
        "name": (["eval-set", "add", "bad name!", str(utf8)], "evaluation set name 'bad name!' is invalid"),
        "missing": (["eval-set", "add", "x", str(tmp_path / "nowhere")], "nowhere: does not exist"),
        "choice": (["eval-set", "add", "x", str(utf8), "--format", "csv"], "invalid choice: 'csv'"),
        "unregistered": (["materialize", "ghost"], "evaluation set 'ghost' is not registered"),
    }
    procs = {
        label: subprocess.Popen(
            _emojudge(*args),
            cwd=tmp_path,
            env=_cli_env(tmp_path / label.replace(" ", "_")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label, (args, _) in cases.items()
    }
    for label, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        _assert_one_error_line(done, cases[label][1])


def _materialize(tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _emojudge("materialize", name, "--no-train"),
        cwd=tmp_path,
        env=_cli_env(tmp_path, EMOJUDGE_PROFILE="acoustic"),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _register(tmp_path: Path, name: str, corpus: Path) -> None:
    done = subprocess.run(
        _emojudge("eval-set", "add", name, str(corpus)),
        cwd=tmp_path,
        env=_cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and f"registered {name} (" in done.stdout, done.stderr[-3000:]


def _assert_run_error(done: subprocess.CompletedProcess, expected: str) -> None:
    """A failed run: exit 2, the last stderr line is the one-line error, and no stack trace anywhere."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: {expected}", done.stderr[-3000:]
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr


@pytest.mark.slow_fault
def test_materialize_with_no_usable_clips_says_what_to_do(tmp_path: Path) -> None:
    corpus = tmp_path / "broken"
    corpus.mkdir()
    (corpus / "one.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk that is not audio")
    (corpus / "two.wav").write_bytes(b"")
    _register(tmp_path, "broken", corpus)
    done = _materialize(tmp_path, "broken")
    _assert_run_error(
        done,
        f"evaluation set 'broken' has no usable clips (2 rejected; first: cannot decode audio one.wav: "
        f"Error in WAV file. No 'data' chunk marker): fix the corpus at {corpus} (see table rejected_inputs), "
        "then run emojudge materialize broken again",
    )


@pytest.mark.slow_fault
def test_scoring_with_no_trained_model_says_train_first(tmp_path: Path) -> None:
    corpus = _write_corpus(tmp_path / "fresh")
    _register(tmp_path, "fresh", corpus)
    done = _materialize(tmp_path, "fresh")
    _assert_run_error(done, "no model registered: train first (emojudge materialize <training set>)")


def test_corpus_broken_after_registration_fails_ingest_in_one_line(tmp_path: Path, emojudge_home: Path) -> None:
    """A manifest re-saved in another encoding after `eval-set add` fails the utterances asset with a Failure whose
    description (what the CLI prints) is the same one line registration would have given."""
    import dagster as dg

    from emojudge_models.settings import Settings
    from emojudge_pipeline import cli
    from emojudge_pipeline.assets.ingest import utterances
    from emojudge_pipeline.resources import WarehouseResource, default_ingest
    from emojudge_pipeline.run_console import user_failure

    corpus = _write_corpus(tmp_path / "c")
    cli.add_eval_set("later", corpus, None)
    _write_corpus(corpus, "latin-1")
    result = dg.materialize(
        [utterances],
        partition_key="later",
        instance=cli.instance(),
        resources={
            "warehouse_db": WarehouseResource(home=str(emojudge_home)),
            "ingest": default_ingest(Settings.from_env()),
        },
        raise_on_error=False,
    )
    assert not result.success
    assert user_failure(result) == (
        f"{corpus / 'manifest.csv'}: not readable as UTF-8 (invalid continuation byte at byte 52); "
        "save it as UTF-8 or UTF-16 text"
    )


@pytest.mark.slow_fault
def test_a_name_registered_for_another_corpus_is_re_pointed_only_with_replace(tmp_path: Path) -> None:
    """`eval-set add demo OTHER.csv` silently re-pointed the training set; now it is one line and exit 2 unless
    --replace is given. Adding the same corpus again stays a no-op."""
    first, other = _write_corpus(tmp_path / "first"), _write_corpus(tmp_path / "other")
    env = _cli_env(tmp_path)

    def add(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(_emojudge("eval-set", "add", *args), env=env, capture_output=True, text=True, timeout=300)

    def registered() -> list[tuple[str, str, str]]:
        from emojudge_models.store import warehouse

        with warehouse.connect(tmp_path / "home", read_only=True) as con:
            return con.execute("SELECT name, format, path FROM eval_sets").fetchall()

    assert add("demo", str(first / "manifest.csv")).returncode == 0
    assert add("demo", str(first / "manifest.csv")).returncode == 0, "the same corpus again"
    refused = add("demo", str(other / "manifest.csv"))
    _assert_one_error_line(
        refused,
        f"evaluation set 'demo' already points at {first / 'manifest.csv'} (manifest); add --replace to point it at "
        f"{other / 'manifest.csv'} (manifest)",
    )
    assert registered() == [("demo", "manifest", str(first / "manifest.csv"))]
    assert add("demo", str(other), "--format", "folder", "--replace").returncode == 0
    assert registered() == [("demo", "folder", str(other))]


@pytest.mark.parametrize("corpus_format", ["manifest", "folder"])
def test_a_symlinked_audio_folder_is_read_like_a_real_one(tmp_path: Path, corpus_format: str) -> None:
    """A corpus whose audio/ is a symlink to a folder elsewhere was refused ("lists no usable clips": every path
    'escaped' the corpus once resolved; a folder corpus listed no file, the walk not following the link). A link
    inside the corpus is the corpus owner's choice; climbing out with `..` is still refused."""
    shared = _write_corpus(tmp_path / "shared")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "audio").symlink_to(shared / "audio", target_is_directory=True)
    if corpus_format == "manifest":
        (corpus / "manifest.csv").write_bytes((shared / "manifest.csv").read_bytes() + b"x,../shared/audio/a.wav,,,\n")
    assert check_corpus(corpus, corpus_format).audio_files == 3
    result = ingest_corpus(corpus, corpus_format, workers=1)
    assert len(result.utterances) == 3 and set(result.utterances["audio_path"]) == {
        str(corpus / "audio" / name) for name in ("a.wav", "b.wav", "c.flac")
    }
    escaped = [r.reason for r in result.rejections if r.reason == "audio path escapes the corpus root"]
    assert escaped == (["audio path escapes the corpus root"] if corpus_format == "manifest" else [])
