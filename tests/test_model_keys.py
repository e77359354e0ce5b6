"""One model-key scheme for every model kind: equal inputs, equal keys; any change of input, a new key."""

from emojudge_models.models.keys import data_key, model_key

HYPER = {"lr": 1e-3, "pooling": "attentive"}


def test_model_key_is_stable_and_ignores_order() -> None:
    key = model_key("audio_head", data_keys=["b", "a"], hyperparameters=HYPER, code_version="heads-1")
    same = model_key(
        "audio_head", data_keys=("a", "b"), hyperparameters={"pooling": "attentive", "lr": 1e-3}, code_version="heads-1"
    )
    assert key == same
    assert len(key) == 20 and int(key, 16) >= 0


def test_model_key_changes_with_each_input() -> None:
    base = {"data_keys": ["a", "b"], "hyperparameters": HYPER, "code_version": "heads-1"}
    key = model_key("audio_head", **base)
    changed = [
        model_key("text_head", **base),
        model_key("audio_head", **{**base, "data_keys": ["a", "b", "c"]}),
        model_key("audio_head", **{**base, "hyperparameters": {**HYPER, "lr": 1e-4}}),
        model_key("audio_head", **{**base, "hyperparameters": {**HYPER, "seed": 1}}),
        model_key("audio_head", **{**base, "code_version": "heads-2"}),
    ]
    assert len({key, *changed}) == 6


def test_data_key_names_its_use_and_tracks_rows_and_targets() -> None:
    rows = [("set", "u1", "0"), ("set", "u2", "3")]
    key = data_key("train", "enc", rows)
    assert key.startswith("train:enc:") and len(key.rsplit(":", 1)[1]) == 16
    assert key == data_key("train", "enc", [list(r) for r in rows])
    assert key != data_key("development", "enc", rows)
    assert key != data_key("train", "enc", [("set", "u1", "0"), ("set", "u2", "4")])
    assert key != data_key("train", "enc", rows[:1])
