"""Shipped real-speech models (models/shipped.py, shipped_recipe.py) and the rule that picks which model scores a set
(models/selection.py): a fresh home scores a folder of real clips with the shipped model and says so, and models
trained on the synthetic demo corpus score other sets only when the user opts in."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch

from emojudge_models.evaluation.metrics import f1_macro_of_indices
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.models import registry, shipped_recipe
from emojudge_models.models.checkpoints import read_checkpoint_config, save_checkpoint
from emojudge_models.models.linear_probe import LinearProbeConfig, LinearProbeModel
from emojudge_models.models.predict import predict_audio
from emojudge_models.models.registry import RegisteredModel
from emojudge_models.models.selection import choose_fusion, choose_model, origin, synthetic_sets, trained_on
from emojudge_models.models.shipped import encoder_identity, shipped_for, shipped_models
from emojudge_models.settings import Settings, SettingsError
from emojudge_models.store import warehouse
from emojudge_pipeline import cli
from emojudge_pipeline.assets.fusion import fused_predictions
from emojudge_pipeline.assets.logits import logits
from emojudge_pipeline.resources import default_resources

REPO = Path(__file__).resolve().parents[1]
SHIPPED_KEY = "shipped:ravdess-actors-01-12"
BASE_MODEL = "ravdess-whisper-base-logreg"


def _shipped(name: str = BASE_MODEL):
    return next(model for model in shipped_models() if model.name == name)


def model_metadata_of(model) -> dict:
    """A shipped model's config metadata, as bench/train_shipped_model.py wrote it."""
    return read_checkpoint_config(model.path)["metadata"]


def _model(key: str, trained: str | None, sets: list[str], inputs: list[str] | None = None) -> RegisteredModel:
    return RegisteredModel(
        model_key=key,
        kind="fusion" if inputs else "audio_head",
        task="categorical",
        path="/nowhere",
        train_eval_sets=sets,
        hyperparameters={},
        dev_metric_name="f1_macro",
        dev_metric=0.5,
        input_model_keys=inputs or [],
        trained_on=trained,
    )


def test_selection_prefers_user_models_keeps_demo_models_to_the_demo_and_falls_back_to_shipped(tmp_path: Path) -> None:
    demo_manifest = tmp_path / "demo_corpus" / "manifest.csv"
    synthetic = synthetic_sets([("demo", str(demo_manifest)), ("msp", "/data/msp")], demo_manifest)
    assert synthetic == {"demo"}
    assert trained_on(["demo"], synthetic) == "synthetic:demo" and trained_on(["msp"], synthetic) == "sets:msp"
    demo, user, old_demo = (
        _model("d", "synthetic:demo", ["demo"]),
        _model("u", "sets:msp", ["msp"]),
        _model("o", None, ["demo"]),
    )
    assert origin(old_demo, synthetic) == "synthetic" and origin(_model("o2", None, ["msp"]), synthetic) == "user"
    shipped = _shipped()

    def pick(candidates, eval_set, opt_in=False):
        return choose_model(candidates, eval_set, synthetic, opt_in, shipped, "enc")

    assert pick([demo, user], "mine").model.model_key == "u", "a user model scores any set"
    assert pick([demo, old_demo], "demo").model.model_key == "d", "demo models score the demo corpus"
    chosen = pick([demo, old_demo], "mine")
    assert chosen.shipped is shipped and chosen.model.trained_on == SHIPPED_KEY and chosen.model.encoder_key == "enc"
    assert "2 model(s) trained on the synthetic demo corpus passed over" in chosen.reason
    assert pick([demo], "mine", opt_in=True).model.model_key == "d"
    none = choose_model([demo], "mine", synthetic, False, None, "enc")
    assert none.model is None and "EMOJUDGE_USE_DEMO_MODELS=1" in none.reason

    fusions = [
        _model("f-new", "synthetic:demo", ["demo"], ["d", "t"]),
        _model("f-old", "sets:msp", ["msp"], ["u", "t"]),
    ]
    assert choose_fusion(fusions, {"u", "t"}).model_key == "f-old"
    assert choose_fusion(fusions, {shipped.model_key}) is None, "no fusion fitted on the shipped model"


def test_the_shipped_model_fits_its_encoder_on_any_device_and_carries_its_card_and_licence() -> None:
    model = _shipped()
    assert model.trained_on == SHIPPED_KEY and model.modality == "audio" and model.task == "categorical"
    spec = model.encoder_spec
    assert spec["model"] == "base" and spec["window"] == "clip" and spec["layer"] == 2
    last_layer = {key: value for key, value in spec.items() if key != "layer"}
    assert shipped_for("audio", "categorical", last_layer) is None, "frames of another layer are not its inputs"
    assert shipped_for("audio", "categorical", {**spec, "device": "cuda", "compute_type": "float16"}) is model
    assert shipped_for("audio", "categorical", {**spec, "model": "tiny.en"}) is None
    assert [m.name for m in shipped_models()] == [BASE_MODEL] and model.card.is_file()
    assert shipped_for("text", "categorical", spec) is None and shipped_for("audio", "attributes", spec) is None
    assert encoder_identity(spec) == {k: v for k, v in spec.items() if k not in ("device", "compute_type")}
    card = model.card.read_text()
    assert "CC BY-NC-SA 4.0" in card and "non-commercial" in card.lower() and "Livingstone" in card
    assert "bench/train_shipped_model.py" in card and "nested" in card.lower()
    assert (model.path / "model.safetensors").stat().st_size < 100_000, "kilobytes, not megabytes"
    readme = (REPO / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in readme and "non-commercial" in readme


def test_recipe_chooses_c_by_speaker_groups_and_its_numpy_scores_match_the_torch_module() -> None:
    rng = np.random.default_rng(0)
    speakers = np.repeat([f"s{i}" for i in range(6)], 12)
    y = np.tile(np.arange(3), 24)
    frames = [rng.normal(size=(int(rng.integers(5, 15)), 4)) + 3.0 * np.eye(4)[label] for label in y]
    frames = [f.astype(np.float32) + rng.normal(size=4).astype(np.float32) for f in frames]  # a voice offset each
    x = shipped_recipe.normalised_stats(frames, speakers)
    fit = shipped_recipe.train(x, y, speakers)
    assert set(fit.cv_scores) == {0.001, 0.01, 0.1, 1.0, 10.0} and fit.C in fit.cv_scores
    assert fit.cv_scores[fit.C] == max(fit.cv_scores.values()) > 0.8
    table = {"eval_set": "set", "utterance_id": range(len(frames)), "speaker_id": list(speakers)}
    normaliser = SpeakerNormaliser.for_rows(pd.DataFrame(table))
    keys = [("set", i) for i in range(len(frames))]
    normalised = normaliser.add_all(zip(keys, frames, strict=True)).apply(keys, frames)
    torch_out = predict_audio(fit.model, normalised, "cpu")
    assert np.allclose(torch_out, shipped_recipe.predict_stats(fit.model, x), atol=1e-4)
    nested = shipped_recipe.nested_evaluation(frames, y, speakers).summary()
    assert len(nested["folds"]) == 6 and nested["f1_macro_pooled"] > 0.8


def test_the_recipe_chooses_the_encoder_layer_inside_each_training_fold() -> None:
    """Of two layers' frames, only layer 2's carry the class: the recipe picks it by grouped CV on the training
    speakers, in every outer fold of the nested figure, and says so; ties go to the lower layer."""
    rng = np.random.default_rng(4)
    speakers = np.repeat([f"s{i}" for i in range(6)], 6)
    y = np.tile(np.arange(3), 12)
    noise = [rng.normal(size=(10, 4)).astype(np.float32) for _ in y]
    signal = [(rng.normal(size=(10, 4)) + 3.0 * np.eye(4)[label]).astype(np.float32) for label in y]
    nested = shipped_recipe.nested_evaluation({1: noise, 2: signal}, y, speakers).summary()
    assert [fold["layer"] for fold in nested["folds"]] == [2] * 6 and nested["f1_macro_pooled"] > 0.8
    stats = {layer: shipped_recipe.normalised_stats(f, speakers) for layer, f in ((1, noise), (2, signal))}
    choice = shipped_recipe.choose_layer(stats, y, speakers)
    assert choice.layer == 2 and choice.scores[2] > 0.8 > choice.scores[1] and choice.fit.C in choice.fit.cv_scores
    assert shipped_recipe.choose_layer({3: stats[2], 2: stats[2]}, y, speakers).layer == 2


def test_a_speech_copy_is_the_clip_without_the_silence_around_its_speech() -> None:
    rng = np.random.default_rng(2)
    rate = 16_000
    speech = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    quiet = (1e-4 * rng.standard_normal(rate)).astype(np.float32)  # -80 dB: far under the 30 dB rule
    copy = shipped_recipe.speech_copy(np.concatenate([quiet, speech, quiet]))
    assert rate <= len(copy) <= rate + 2 * 2048  # the speech, give or take librosa's analysis frames
    assert np.abs(copy).max() == pytest.approx(0.3, rel=0.01)
    assert len(shipped_recipe.speech_copy(speech)) == rate


def test_speech_copies_teach_the_recipe_what_a_clip_without_its_silence_looks_like() -> None:
    """Clips as recorded carry a class cue in their frames that their speech copies lack (the copies carry it in
    other dimensions): trained on the clips alone the recipe cannot score held-out copies; trained with them it can,
    and a clip and its copy are never on two sides of a fold."""
    rng = np.random.default_rng(1)
    speakers = np.repeat([f"s{i}" for i in range(6)], 12)
    y = np.tile(np.arange(3), 24)
    clips = [rng.normal(size=(10, 6)) + 3.0 * np.eye(6)[label] for label in y]
    copies = [rng.normal(size=(6, 6)) + 3.0 * np.eye(6)[3 + label] for label in y]
    without = shipped_recipe.nested_evaluation(clips, y, speakers).summary()
    assert "f1_macro_pooled_speech_copies" not in without
    summary = shipped_recipe.nested_evaluation(clips, y, speakers, copies).summary()
    assert summary["f1_macro_pooled"] > 0.9 and summary["f1_macro_pooled_speech_copies"] > 0.9
    x = shipped_recipe.normalised_stats(clips, speakers)
    raw_only = shipped_recipe.train(x, y, speakers)
    copies_x = shipped_recipe.normalised_stats(copies, speakers)
    assert f1_macro_of_indices(y, shipped_recipe.predict_stats(raw_only.model, copies_x).argmax(axis=1)) < 0.6
    rows = shipped_recipe.with_copies(x, copies_x, y, speakers)
    assert [len(column) for column in rows] == [2 * len(y)] * 3 and (rows[2][len(y) :] == speakers).all()


def _folder(tmp_path: Path, ravdess_dir: Path, actor: str = "01") -> Path:
    """A folder of one actor's 14 clips (a copy under tmp_path; no clip enters the repository)."""
    folder = tmp_path / "my-clips"
    folder.mkdir()
    for clip in sorted((ravdess_dir / "audio").glob(f"03-01-*-{actor}.wav")):
        shutil.copy(clip, folder / clip.name)
    return folder


def _truth(utterance_id: str) -> str:
    code = utterance_id.split("-")[2]
    return {"01": "neutral", "03": "happy", "04": "sad", "05": "angry", "06": "fear", "07": "disgust"}.get(
        code, "surprise"
    )


@pytest.mark.slow
def test_fresh_home_scores_a_folder_with_the_shipped_model_and_demo_models_only_by_opt_in(
    emojudge_home: Path, tmp_path: Path, ravdess_dir: Path, monkeypatch, capsys
) -> None:
    """No training set in this home: the folder set is scored by the shipped model, the run and the view say so,
    fusion follows the audio model; then a model trained on the synthetic demo corpus does not score it unless
    EMOJUDGE_USE_DEMO_MODELS=1."""
    cli.main(["eval-set", "add", "mine", str(_folder(tmp_path, ravdess_dir)), "--format", "folder"])
    cli.main(["materialize", "mine"])
    out = capsys.readouterr().out
    model = _shipped()
    assert f"audio categorical: {model.model_key} trained on {SHIPPED_KEY}; model card {model.card}" in out
    assert "fused categorical: no fusion model for these models, the audio prediction" in out
    with warehouse.connect(emojudge_home, read_only=True) as con:
        rows = con.execute(
            "SELECT utterance_id, audio_label, fused_label, audio_model_trained_on, fused_modalities, language "
            "FROM v_predictions ORDER BY utterance_id"
        ).fetchall()
        registered = con.execute("SELECT trained_on, path FROM model_registry").fetchall()
    assert len(rows) == 14 and {r[3] for r in rows} == {SHIPPED_KEY} and {r[4] for r in rows} == {"audio"}
    assert all(r[1] == r[2] for r in rows) and {r[5] for r in rows} == {"en"}
    correct = sum(r[1] == _truth(r[0]) for r in rows)
    assert correct >= 12, rows  # actor 01 is in the training data: nearly every clip right
    assert registered == [(SHIPPED_KEY, str(model.path))]

    # A model trained on the synthetic demo corpus (registered as the training asset would) for the same encoder.
    demo_manifest = emojudge_home / "demo_corpus" / "manifest.csv"
    demo_manifest.parent.mkdir(parents=True)
    demo_manifest.write_text("path,emotion\n")
    config = LinearProbeConfig(task="categorical", input_dim=512, C=1.0)
    probe = LinearProbeModel(config)
    probe.bias.copy_(torch.tensor([5.0, 0, 0, 0, 0, 0, 0, 0]))  # says "angry" to everything
    path = save_checkpoint(probe, {}, emojudge_home / "models" / "demo-probe")
    with warehouse.connect(emojudge_home) as con:
        con.execute(warehouse.sql_text("ingest/register_eval_set.sql"), ["demo", "manifest", str(demo_manifest)])
        key = con.execute("SELECT DISTINCT encoder_key FROM feature_index WHERE modality = 'audio'").fetchone()[0]
        registry.register(
            con,
            RegisteredModel("demo-probe", "audio_head", "categorical", str(path), ["demo"], {}, "f1_macro", 0.9, key,
                            trained_on="synthetic:demo"),
            "r",
        )  # fmt: skip

    def score(opt_in: bool) -> set[tuple[str, str]]:
        monkeypatch.setenv("EMOJUDGE_USE_DEMO_MODELS", "1" if opt_in else "0")
        resources = default_resources(Settings.from_env())
        result = dg.materialize([logits, fused_predictions], partition_key="mine", instance=cli.instance(),
                                resources=resources)  # fmt: skip
        assert result.success
        with warehouse.connect(emojudge_home, read_only=True) as con:
            return set(con.execute("SELECT audio_model_trained_on, audio_label FROM v_predictions").fetchall())

    without = score(opt_in=False)
    assert {trained for trained, _ in without} == {SHIPPED_KEY} and len({label for _, label in without}) > 3
    assert score(opt_in=True) == {("synthetic:demo", "angry")}

    # A folder of one's own pretrained models (EMOJUDGE_SHIPPED_MODELS) replaces the package's; a missing one is
    # refused in one line.
    own = LinearProbeModel(LinearProbeConfig(task="categorical", input_dim=512, C=1.0))
    own.bias.copy_(torch.tensor([0, 5.0, 0, 0, 0, 0, 0, 0]))  # says "sad" to everything
    metadata = {**model_metadata_of(model), "model_key": "my-probe", "trained_on": "shipped:my-voices"}
    save_checkpoint(own, metadata, tmp_path / "my-models" / "my-probe")
    monkeypatch.setenv("EMOJUDGE_SHIPPED_MODELS", str(tmp_path / "my-models"))
    assert score(opt_in=False) == {("shipped:my-voices", "sad")}
    monkeypatch.setenv("EMOJUDGE_SHIPPED_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match=r"EMOJUDGE_SHIPPED_MODELS: no such folder"):
        Settings.from_env()
    monkeypatch.delenv("EMOJUDGE_SHIPPED_MODELS")

    # What `make demo` ends with: the shipped model, its card, and the two commands for a folder of one's own.
    with warehouse.connect(emojudge_home) as con:
        con.execute(
            "INSERT INTO feature_index SELECT 'demo', utterance_id, modality, encoder_key, content_sha256, n_frames, "
            "dim, dtype, file, \"row\", run_id, created_at FROM feature_index WHERE eval_set = 'mine' LIMIT 1"
        )
    lines = cli.own_audio_lines(Settings.from_env().model_copy(update={"use_demo_models": False}))
    assert str(model.card) in lines[0] and "CC BY-NC-SA 4.0" in lines[0] and "synthetic" in lines[0]
    assert lines[1:] == [
        "  emojudge eval-set add my-clips /path/to/folder --format folder",
        "  emojudge materialize my-clips",
    ]
