from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_roberta

from emojudge_models.models.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.losses import WeightedFocalLoss
from emojudge_models.models.text_classifier import (
    TextEmotionClassifier,
    TextFinetuneConfig,
    finetune_text_classifier,
    predict_texts,
)

SENTENCES_BY_CLASS = {
    0: ["I am furious about this", "this makes me so angry", "stop shouting at me now"],
    1: ["I feel sad and alone", "we lost everything today", "I miss her so much"],
    2: ["what a wonderful happy day", "I love this so much", "we won the game"],
    7: ["the meeting is at noon", "please pass the salt", "the report is on the desk"],
}


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    """A random 2-layer RoBERTa (hidden 32) with a byte-level BPE tokenizer trained on the test sentences."""
    sentences = [s for group in SENTENCES_BY_CLASS.values() for s in group]
    return save_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"), sentences * 3, vocab_size=300)


def _labelled_texts() -> tuple[list[str], list[int]]:
    pairs = [(text, label) for label, group in SENTENCES_BY_CLASS.items() for text in group]
    return [text for text, _ in pairs], [label for _, label in pairs]


@pytest.mark.parametrize(("task", "n_outputs"), [("categorical", 8), ("attributes", 3)])
def test_forward_gives_one_output_row_per_text(tiny_roberta: Path, task: str, n_outputs: int) -> None:
    model = TextEmotionClassifier(tiny_roberta, task).eval()
    assert model.dropout.p == 0.3
    outputs = model(**model.tokenize(["I am happy", "this is a much longer sentence about the weather"]))
    assert outputs.shape == (2, n_outputs)


def test_long_transcripts_are_truncated_to_128_tokens(tiny_roberta: Path) -> None:
    model = TextEmotionClassifier(tiny_roberta, "categorical")
    inputs = model.tokenize(["we won the game " * 200, "hi"])
    assert inputs["input_ids"].shape == (2, 128)
    assert inputs["input_ids"][0, 0] == model.tokenizer.bos_token_id
    assert inputs["input_ids"][0, -1] == model.tokenizer.eos_token_id
    assert inputs["attention_mask"][1].sum() < 10
    assert model(**inputs).shape == (2, 8)


def test_a_few_optimisation_steps_lower_the_loss(tiny_roberta: Path) -> None:
    torch.manual_seed(0)
    model = TextEmotionClassifier(tiny_roberta, "categorical")
    texts, labels = _labelled_texts()
    inputs, targets = model.tokenize(texts), torch.tensor(labels)
    loss_fn = WeightedFocalLoss(gamma=2.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = loss_fn(model(**inputs), targets)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.8 * losses[0]


def _finetune_config(tiny_roberta: Path, task: str = "categorical", epochs: int = 4) -> TextFinetuneConfig:
    return TextFinetuneConfig(
        encoder_name_or_path=str(tiny_roberta),
        task=task,
        train=TrainConfig(
            lr=2e-3,
            weight_decay=0.01,
            warmup_ratio=0.1,
            batch_size=4,
            grad_accum_steps=2,
            max_epochs=epochs,
            patience=epochs,
            max_grad_norm=1.0,
            focal_gamma=2.0,
        ),
    )


def test_default_finetune_config_is_the_papers() -> None:
    hyper = TextFinetuneConfig(encoder_name_or_path="x", task="categorical").train
    assert (hyper.lr, hyper.weight_decay, hyper.warmup_ratio) == (1e-5, 0.01, 0.1)


def test_finetune_lowers_the_loss_follows_the_warmup_schedule_and_selects_on_dev(tiny_roberta: Path) -> None:
    texts, labels = _labelled_texts()
    seen: list[int] = []
    result = finetune_text_classifier(
        texts,
        labels,
        texts,
        labels,
        _finetune_config(tiny_roberta),
        "cpu",
        seed=0,
        on_epoch=lambda epoch, _: seen.append(epoch),
    )
    assert seen == [1, 2, 3, 4]
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert result.history[-1]["lr"] == 0.0  # linear decay reaches zero at the last optimiser step
    assert result.dev_metric_name == "f1_macro"
    assert result.dev_metric == max(row["dev_metric"] for row in result.history)
    assert isinstance(result.model, TextEmotionClassifier) and not result.model.training


def test_finetune_attributes_with_ccc_loss(tiny_roberta: Path) -> None:
    texts, labels = _labelled_texts()
    targets = [np.array([label / 7, 1 - label / 7, 0.5 + label / 14], dtype=np.float32) for label in labels]
    result = finetune_text_classifier(
        texts, targets, texts, targets, _finetune_config(tiny_roberta, "attributes", 3), "cpu", seed=0
    )
    assert result.dev_metric_name == "ccc_mean"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert predict_texts(result.model, texts, "cpu").shape == (12, 3)


def test_predict_texts_keeps_input_order(tiny_roberta: Path) -> None:
    model = TextEmotionClassifier(tiny_roberta, "categorical").eval()
    texts, _ = _labelled_texts()
    with torch.no_grad():
        one_by_one = np.concatenate([model(**model.tokenize([text])).numpy() for text in texts])
    np.testing.assert_allclose(predict_texts(model, texts, "cpu", batch_size=5), one_by_one, atol=1e-5)


def test_finetune_rejects_bad_targets(tiny_roberta: Path) -> None:
    texts, labels = _labelled_texts()
    with pytest.raises(ValueError, match="development item 1: categorical target"):
        finetune_text_classifier(texts, labels, texts[:2], [0, 9], _finetune_config(tiny_roberta), "cpu", seed=0)


def test_checkpoint_round_trip_gives_identical_logits(tiny_roberta: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = TextEmotionClassifier(tiny_roberta, "categorical").eval()
    texts, _ = _labelled_texts()
    directory = save_checkpoint(model, {"model_key": "abc"}, tmp_path / "text")
    restored = load_checkpoint(directory, "cpu")
    assert isinstance(restored, TextEmotionClassifier) and not restored.training
    with torch.no_grad():
        assert torch.equal(restored(**restored.tokenize(texts)), model(**model.tokenize(texts)))
    document = read_checkpoint_config(directory)
    assert document["kind"] == "text_finetune" and document["metadata"] == {"model_key": "abc"}
    assert (directory / "encoder" / "tokenizer.json").is_file()
