"""Randomly initialised Hugging Face checkpoints built from configs, for tests and speed benchmarks (no download).

The tiny WavLM keeps WavLM's real convolution strides (320 samples per frame, 50 Hz) and the layer-norm
convolution stack of WavLM-Large, so frame counts and padding behaviour match the real model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from tokenizers.processors import TemplateProcessing
from transformers import (
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaModel,
    Wav2Vec2FeatureExtractor,
    WavLMConfig,
    WavLMModel,
)

WAVLM_CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
WAVLM_CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
ROBERTA_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def wavlm_large_config() -> WavLMConfig:
    """The architecture of microsoft/wavlm-large (24 layers, 1024 wide, layer-norm conv stack, stable layer norm)."""
    return WavLMConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
    )


def tiny_wavlm_config(hidden_size: int = 32, num_hidden_layers: int = 2, conv_channels: int = 16) -> WavLMConfig:
    return WavLMConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(conv_channels,) * len(WAVLM_CONV_STRIDES),
        conv_stride=WAVLM_CONV_STRIDES,
        conv_kernel=WAVLM_CONV_KERNELS,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
    )


def save_wavlm(directory: Path, config: WavLMConfig, seed: int = 0) -> Path:
    """Save a random-weight WavLM and a WavLM-Large-style feature extractor under ``directory``."""
    torch.manual_seed(seed)
    WavLMModel(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(directory)
    return directory


def save_tiny_roberta(directory: Path, corpus: Iterable[str], seed: int = 0, vocab_size: int = 400) -> Path:
    """Save a 2-layer, 32-wide random RoBERTa with a byte-level BPE tokenizer trained on ``corpus``."""
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        list(corpus), vocab_size=vocab_size, min_frequency=1, special_tokens=list(ROBERTA_SPECIAL_TOKENS)
    )
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
    )
    fast.save_pretrained(directory)
    config = RobertaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=130,
        pad_token_id=fast.pad_token_id,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    RobertaModel(config).save_pretrained(directory)
    return directory


def demo_training_env(root: Path, max_epochs: int = 2, patience: int = 1) -> tuple[Path, dict[str, str]]:
    """The demo corpus written under ``root`` and the settings that train on it in seconds: the acoustic profile, a
    tiny RoBERTa fitted to the corpus's sentences, few epochs, and the chat judge (the caller sets its base URL)."""
    import json

    from emojudge_models.ingest.demo_corpus import write_demo_corpus

    manifest = write_demo_corpus(root / "corpus")
    sentences = [line.split(",")[3] for line in manifest.read_text().splitlines()[1:]]
    text_model = save_tiny_roberta(root / "tiny-roberta", sentences)
    return manifest, {
        "EMOJUDGE_PROFILE": "acoustic",
        "EMOJUDGE_TEXT_ENCODER": json.dumps({"kind": "hf", "model": str(text_model)}),
        "EMOJUDGE_MAX_EPOCHS": str(max_epochs),
        "EMOJUDGE_PATIENCE": str(patience),
        "EMOJUDGE_JUDGE": "openai-chat",
        "OPENAI_API_KEY": "sk-test",
    }
