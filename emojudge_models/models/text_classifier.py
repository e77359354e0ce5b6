"""Fine-tuned text emotion model: a transformers encoder, its first-token (CLS) vector, dropout and a linear head."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from emojudge_models.models.batches import Batch, BatchPlan, Pairs, check_target
from emojudge_models.models.heads import output_dim
from emojudge_models.models.loop import EpochCallback, TrainConfig, TrainResult, fit, run_inference, seeded, task_loss

CODE_VERSION = "text-classifier-1"
"""Bump when a change to this module changes what a fine-tuned text model computes (part of ``model_key``)."""

MAX_LENGTH = 128
"""Transcripts are truncated to this many tokens, special tokens included."""


class TextEmotionClassifier(nn.Module):
    """AutoModel encoder -> first-token hidden state -> dropout -> linear: logits (B, 8) or attributes (B, 3)."""

    def __init__(
        self, encoder_name_or_path: str | Path, task: str, dropout: float = 0.3, max_length: int = MAX_LENGTH
    ) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(encoder_name_or_path), dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(str(encoder_name_or_path))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, output_dim(task))
        self.config: dict[str, Any] = {
            "encoder_name_or_path": str(encoder_name_or_path),
            "task": task,
            "dropout": dropout,
            "max_length": max_length,
        }

    @property
    def task(self) -> str:
        return self.config["task"]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded, truncated ``input_ids`` and ``attention_mask`` for a batch of transcripts."""
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.config["max_length"], return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(hidden[:, 0]))


def _default_finetune_train_config() -> TrainConfig:
    return TrainConfig(
        lr=1e-5,
        weight_decay=0.01,
        warmup_ratio=0.1,
        batch_size=16,
        grad_accum_steps=2,
        max_epochs=10,
        patience=3,
        max_grad_norm=1.0,
    )


@dataclass(frozen=True, kw_only=True)
class TextFinetuneConfig:
    """The encoder to fine-tune, the head on it and the optimisation (AdamW 1e-5, wd 0.01, 10 % warm-up)."""

    encoder_name_or_path: str
    task: str
    dropout: float = 0.3
    max_length: int = MAX_LENGTH
    train: TrainConfig = field(default_factory=_default_finetune_train_config)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collate_texts(model: TextEmotionClassifier, task: str | None) -> Callable[[list[tuple[int, Any]]], Batch]:
    """Tokenize (text, target) items, or bare texts when ``task`` is None, one batch at a time."""

    def collate(batch: list[tuple[int, Any]]) -> Batch:
        indices = [index for index, _ in batch]
        texts = [item[0] if task is not None else item for _, item in batch]
        targets = None
        if task is not None:
            values = [item[1] for _, item in batch]
            targets = torch.as_tensor(np.asarray(values, dtype=np.int64 if task == "categorical" else np.float32))
        return indices, model.tokenize(texts), targets

    return collate


def _text_plan(
    texts: Sequence[str], targets: Sequence[Any] | None, model: TextEmotionClassifier, batch_size: int, name: str
) -> BatchPlan:
    """Batches of transcripts of similar character length; validates texts and targets up front."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name} item {index}: transcript must be a string, got {type(text).__name__}")
    if targets is not None:
        if len(targets) != len(texts) or not texts:
            raise ValueError(
                f"{name}: need a non-empty list of texts with one target each, got {len(texts)} texts "
                f"and {len(targets)} targets"
            )
        for index, target in enumerate(targets):
            check_target(target, model.task, f"{name} item {index}")
    items = list(texts) if targets is None else Pairs(list(texts), list(targets))
    lengths = np.asarray([len(text) for text in texts], dtype=np.int64)
    return BatchPlan(items, lengths, batch_size, collate_texts(model, None if targets is None else model.task))


def finetune_text_classifier(
    train_texts: Sequence[str],
    train_targets: Sequence[Any],
    dev_texts: Sequence[str],
    dev_targets: Sequence[Any],
    config: TextFinetuneConfig,
    device: torch.device | str,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Fine-tune encoder and head together; weights of the best development epoch are kept."""
    device = torch.device(device)
    hyper = config.train
    with seeded(seed, device):
        model = TextEmotionClassifier(config.encoder_name_or_path, config.task, config.dropout, config.max_length)
        train_plan = _text_plan(train_texts, train_targets, model, hyper.batch_size, "train")
        dev_plan = _text_plan(dev_texts, dev_targets, model, hyper.batch_size, "development")

        def linear_warmup(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
            return get_linear_schedule_with_warmup(optimizer, round(hyper.warmup_ratio * total_steps), total_steps)

        return fit(
            model,
            task=config.task,
            train=train_plan,
            dev=dev_plan,
            loss_fn=task_loss(config.task, list(train_targets), hyper),
            config=hyper,
            device=device,
            seed=seed,
            on_epoch=on_epoch,
            scheduler_factory=linear_warmup,
        )


def predict_texts(
    model: TextEmotionClassifier, texts: Sequence[str], device: torch.device | str, batch_size: int = 32
) -> np.ndarray:
    """Outputs (N, 8 | 3) for transcripts, in input order (batched by length, bf16 autocast on CUDA)."""
    device = torch.device(device)
    model.to(device)
    plan = _text_plan(texts, None, model, batch_size, "prediction")
    return run_inference(model, plan.ordered(), device, output_dim(model.task))[0]
