import numpy as np
import pandas as pd
import pytest

from emojudge_models.features.speaker_norm import SET_GROUP, SpeakerNormaliser, check_mode, group_codes
from emojudge_models.features.store import pooled_vector
from emojudge_models.features.utterance_index import UtteranceIndex


def test_speakers_with_too_few_utterances_or_no_id_fall_back_to_their_set() -> None:
    names, codes = group_codes(["a"] * 6 + ["b"] * 2, ["s1"] * 3 + ["s2", None, ""] + ["s1", "s1"], min_utterances=3)
    groups = [names[code] for code in codes]
    assert groups[:3] == [("a", "s1")] * 3
    assert groups[3:6] == [("a", SET_GROUP)] * 3
    assert groups[6:] == [("b", SET_GROUP)] * 2


def _rows(speakers: list[str | None], eval_set: str = "set") -> pd.DataFrame:
    return pd.DataFrame(
        {"eval_set": eval_set, "utterance_id": [f"u{i}" for i in range(len(speakers))], "speaker_id": speakers}
    )


def test_each_speakers_frames_become_zero_mean_unit_std() -> None:
    rng = np.random.default_rng(0)
    from emojudge_models.features.speaker_norm import FULL_SPEAKER_UTTERANCES as FULL

    rows = _rows(["loud"] * FULL + ["quiet"] * FULL)
    offsets = {"loud": 10.0, "quiet": -5.0}
    frames = [
        (rng.normal(size=(20 + i, 4)) * (3.0 if s == "loud" else 0.5) + offsets[s]).astype(np.float32)
        for i, s in enumerate(rows["speaker_id"])
    ]
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances=2).add_all(zip(keys, frames, strict=True))
    normalised = normaliser.apply(keys, frames)
    for speaker in ("loud", "quiet"):
        stacked = np.concatenate([f for f, s in zip(normalised, rows["speaker_id"], strict=True) if s == speaker])
        np.testing.assert_allclose(stacked.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(stacked.std(axis=0), 1.0, atol=1e-4)
    assert normaliser.summary() == {"speakers": 2, "speaker_utterances": 2 * FULL, "set_fallback": 0}


def test_fallback_uses_the_statistics_of_the_whole_set_and_keeps_dtype() -> None:
    rows = _rows(["s1", "s1", None])
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    frames = [np.full((2, 3), v, dtype=np.float16) for v in (1.0, 3.0, 5.0)]
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances=2).add_all(zip(keys, frames, strict=True))
    mean, std = normaliser.stats(keys[2])
    np.testing.assert_allclose(mean, 3.0)
    np.testing.assert_allclose(std, np.sqrt(8 / 3), rtol=1e-6)
    out = normaliser.apply(keys[2:], frames[2:])[0]
    assert out.dtype == np.float16
    np.testing.assert_allclose(out, (5.0 - 3.0) / np.sqrt(8 / 3), rtol=1e-3)
    assert normaliser.summary() == {"speakers": 1, "speaker_utterances": 2, "set_fallback": 1}


def test_a_group_without_frames_and_an_unknown_mode_are_errors() -> None:
    rows = _rows(["s1", "s1"])
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances=1)
    with pytest.raises(ValueError, match="no frames"):
        normaliser.stats(("set", "u0"))
    with pytest.raises(ValueError, match="speaker, none"):
        check_mode("utterance")


def test_pooled_utterance_vectors_give_the_statistics_of_the_frames() -> None:
    """The feature store's mean ++ std vectors and frame counts are enough: no frame needs reading."""
    rng = np.random.default_rng(1)
    rows = _rows(["a", "a", "b", None])
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    frames = [(rng.normal(size=(10 + 7 * i, 5)) * (i + 1) + i).astype(np.float32) for i in range(4)]
    from_frames = SpeakerNormaliser.for_rows(rows, min_utterances=2).add_all(zip(keys, frames, strict=True))
    from_vectors = SpeakerNormaliser.for_rows(rows, min_utterances=2)
    for key, values in zip(keys, frames, strict=True):
        vector = pooled_vector(values)
        from_vectors.add_pooled(key, len(values), vector[:5], vector[5:])
    for key in keys:
        for got, expected in zip(from_vectors.stats(key), from_frames.stats(key), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_corpus_with_few_clips_per_speaker_is_normalised_by_its_set_at_the_default_minimum() -> None:
    """Cross-corpus sets often hold 1-4 clips per speaker: below MIN_SPEAKER_UTTERANCES every clip uses the set's
    statistics (a speaker's 2 clips would give a degenerate std), while a speaker with enough clips keeps their own."""
    from emojudge_models.features.speaker_norm import FULL_SPEAKER_UTTERANCES, MIN_SPEAKER_UTTERANCES

    rng = np.random.default_rng(1)
    few = [f"spk{i}" for i in range(6) for _ in range(MIN_SPEAKER_UTTERANCES - 1)]
    rows = _rows([*few, *["many"] * FULL_SPEAKER_UTTERANCES])
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    frames = [(rng.normal(size=(15, 3)) * 2.0 + 7.0).astype(np.float32) for _ in keys]
    normaliser = SpeakerNormaliser.for_rows(rows).add_all(zip(keys, frames, strict=True))
    assert normaliser.summary() == {
        "speakers": 1,
        "speaker_utterances": FULL_SPEAKER_UTTERANCES,
        "set_fallback": len(few),
    }
    set_mean, set_std = normaliser.stats(keys[0])
    every = np.concatenate(frames)
    np.testing.assert_allclose(set_mean, every.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(set_std, every.std(axis=0), rtol=1e-4)
    own = np.concatenate(frames[len(few) :])
    np.testing.assert_allclose(normaliser.stats(keys[-1])[0], own.mean(axis=0), rtol=1e-5)
    normalised = np.concatenate(normaliser.apply(keys[: len(few)], frames[: len(few)]))
    assert np.isfinite(normalised).all() and abs(float(normalised.mean())) < 0.5


def test_a_thin_speaker_is_shrunk_toward_its_set_and_a_full_one_is_not() -> None:
    """Below FULL_SPEAKER_UTTERANCES a speaker's statistics are a mixture with its set's, weighted n / FULL; from
    there on they are its own (RAVDESS's 14 clips per speaker are normalised as before)."""
    from emojudge_models.features.speaker_norm import FULL_SPEAKER_UTTERANCES, shrink_toward

    thin, full = 6, FULL_SPEAKER_UTTERANCES
    rows = pd.DataFrame(
        {
            "eval_set": "ep",
            "utterance_id": [f"u{i}" for i in range(thin + full)],
            "speaker_id": ["thin"] * thin + ["full"] * full,
        }
    )
    normaliser = SpeakerNormaliser.for_rows(rows)
    frames = [np.full((4, 2), 10.0 if i < thin else -2.0) + np.arange(4)[:, None] for i in range(thin + full)]
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    normaliser.add_all(zip(keys, frames, strict=True))
    own_thin = (np.full(2, 11.5), np.full(2, np.sqrt(1.25)))
    all_frames = np.concatenate(frames)
    set_stats = (all_frames.mean(axis=0), all_frames.std(axis=0))
    mean, std = normaliser.stats(keys[0])
    expected = shrink_toward(own_thin, set_stats, thin / FULL_SPEAKER_UTTERANCES)
    np.testing.assert_allclose(mean, expected[0], rtol=1e-5)
    np.testing.assert_allclose(std, expected[1], rtol=1e-5)
    assert 0 < mean[0] - set_stats[0][0] < own_thin[0][0] - set_stats[0][0]
    mean_full, std_full = normaliser.stats(keys[-1])
    np.testing.assert_allclose(mean_full, np.full(2, -0.5), rtol=1e-6)
    np.testing.assert_allclose(std_full, np.full(2, np.sqrt(1.25)), rtol=1e-6)


def test_the_utterance_index_finds_long_ids_in_any_order_and_names_a_missing_key() -> None:
    """Ids longer than 15 bytes (the demo's ``demo_spk4_angry_0``) were never found: numpy's ``searchsorted`` on
    ``StringDType`` misplaces them, and every speaker-normalised training run failed with a KeyError."""
    rng = np.random.default_rng(0)
    ids = [f"episode-{s}_speaker_{k}_utterance_{i:04d}" for s in range(3) for k in range(4) for i in range(50)]
    sets = ["demo" if i % 3 else "ravdess-with-a-long-name" for i in range(len(ids))]
    order = rng.permutation(len(ids))
    index = UtteranceIndex([sets[i] for i in order], [ids[i] for i in order])
    wanted = rng.permutation(len(ids))[:200]
    found = index.positions([sets[order[w]] for w in wanted], [ids[order[w]] for w in wanted])
    assert found.tolist() == wanted.tolist()
    assert index.find("demo", ["ümlaut-not-there", ids[1]]).tolist() == [-1, int(np.flatnonzero(order == 1)[0])]
    with pytest.raises(KeyError, match="no-such-utterance"):
        index.positions(["demo"], ["no-such-utterance"])
