"""One missing modality never costs an utterance its prediction: it is scored from the modality it has."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from emojudge_models.fusion.models import fit_guarded_fusion
from emojudge_models.fusion.predict import fused_rows
from emojudge_models.labels import EMOTIONS
from emojudge_models.models import registry
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.fusion import fused_predictions
from emojudge_pipeline.resources import WarehouseResource

pytestmark = pytest.mark.reliability

RNG = np.random.default_rng(0)


def informative_logits(labels: np.ndarray, noise: float) -> np.ndarray:
    return np.eye(len(EMOTIONS))[labels] * 3 + RNG.normal(0, noise, (len(labels), len(EMOTIONS)))


def fitted_fusion():
    labels = np.tile(np.arange(len(EMOTIONS)), 20)
    X = np.hstack([informative_logits(labels, 1.0), informative_logits(labels, 1.5)])
    half = len(labels) // 2
    return fit_guarded_fusion("categorical", X[:half], labels[:half], X[half:], labels[half:])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def logits_frame(labels: list[int], with_audio: list[bool], with_text: list[bool]) -> pd.DataFrame:
    rows = []
    for i, (label, has_audio, has_text) in enumerate(zip(labels, with_audio, with_text, strict=True)):
        audio, text = informative_logits(np.array([label]), 0.5)[0], informative_logits(np.array([label]), 0.5)[0]
        rows.append(
            {
                "utterance_id": f"u{i}",
                "audio_logits": list(audio) if has_audio else None,
                "audio_probabilities": list(softmax(audio)) if has_audio else None,
                "audio_label": EMOTIONS[int(audio.argmax())] if has_audio else None,
                "text_logits": list(text) if has_text else None,
                "text_probabilities": list(softmax(text)) if has_text else None,
                "text_label": EMOTIONS[int(text.argmax())] if has_text else None,
            }
        )
    return pd.DataFrame(rows)


def test_each_utterance_is_fused_from_the_modalities_it_has() -> None:
    rows = logits_frame([0, 1, 2, 3], [True, True, False, True], [True, False, True, False])
    out = fused_rows(fitted_fusion(), rows, "categorical", "fk")
    assert out["modalities"].tolist() == ["audio+text", "audio", "text", "audio"]
    assert np.allclose([sum(p) for p in out["probabilities"]], 1.0, atol=1e-5)
    assert out["predicted_label"].tolist()[1:] == [rows.loc[1, "audio_label"], rows.loc[2, "text_label"],
                                                    rows.loc[3, "audio_label"]]  # fmt: skip
    np.testing.assert_allclose(out.loc[2, "probabilities"], rows.loc[2, "text_probabilities"], atol=1e-6)
    assert out.loc[0, "modalities_agree"] in (True, False) and out.loc[1:, "modalities_agree"].isna().all()


def test_the_asset_scores_an_utterance_without_text_and_the_check_passes(tmp_path: Path) -> None:
    model = fitted_fusion()
    path = model.save(tmp_path / "fusion.joblib")
    labels = [0, 1, 2]
    frame = logits_frame(labels, [True, True, True], [True, True, False])  # u2: empty ASR, no text logits
    with warehouse.connect(tmp_path) as con:
        con.execute(warehouse.sql_text("ingest/register_eval_set.sql"), ["s", "manifest", str(tmp_path)])
        utterances = pd.DataFrame(
            {"utterance_id": frame["utterance_id"], "emotion": [EMOTIONS[i] for i in labels], "audio_path": "a.wav",
             "audio_sha256": frame["utterance_id"], "duration_s": 1.0, "sample_rate_hz": 16000, "channels": 1,
             "run_id": "r"}
        )  # fmt: skip
        warehouse.replace_partition(con, "utterances", "s", utterances)
        logits = []
        for modality in ("audio", "text"):
            have = frame[frame[f"{modality}_logits"].notna()]
            logits.append(pd.DataFrame({
                "utterance_id": have["utterance_id"], "modality": modality, "task": "categorical",
                "model_key": f"{modality}-model", "logits": have[f"{modality}_logits"],
                "probabilities": have[f"{modality}_probabilities"], "predicted_label": have[f"{modality}_label"],
                "run_id": "r"}))  # fmt: skip
        warehouse.replace_partition(con, "logits", "s", pd.concat(logits, ignore_index=True))
        registry.register(
            con,
            registry.RegisteredModel(model_key="fk", kind="fusion", task="categorical", path=str(path),
                                     train_eval_sets=["t"], hyperparameters={}, dev_metric_name="f1_macro",
                                     dev_metric=0.9, input_model_keys=["audio-model", "text-model"]),
            "r",
        )  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("eval_sets", ["s"])
    result = dg.materialize(
        [fused_predictions], partition_key="s", instance=instance,
        resources={"warehouse_db": WarehouseResource(home=str(tmp_path))},
    )  # fmt: skip
    assert result.success
    with warehouse.connect(tmp_path, read_only=True) as con:
        stored = con.execute(
            "SELECT utterance_id, modalities, predicted_label FROM fused_predictions "
            "WHERE task = 'categorical' ORDER BY utterance_id"
        ).fetchall()
        problems = con.execute(warehouse.sql_text("fusion/fused_predictions_problems.sql"), [1e-3, "s", "s"]).fetchone()
        view = con.execute("SELECT fused_modalities FROM v_predictions ORDER BY utterance_id").fetchall()
    assert [(u, m) for u, m, _ in stored] == [("u0", "audio+text"), ("u1", "audio+text"), ("u2", "audio")]
    assert stored[2][2] == frame.loc[2, "audio_label"]
    assert problems == (0, 0, 0, 0)
    assert view == [("audio+text",), ("audio+text",), ("audio",)]
