"""From audio to the model's input: input checking, the batched front end, and the feature extractor.

`features.py` holds the log-mel steps as the paper uses them and `features_fast.py` the same
numbers computed in fewer passes on the CPU; this module is what callers use:

- `to_clips`: every accepted kind of audio (tensors, numpy arrays, lists; one clip or a batch)
  checked and turned into a list of 1-D float tensors, with an error that names the clip and the
  fix for everything else. One path for the functions below and for the extractor.
  `require_one_frame` is the same length bound for a decoded file, naming the file (the commands
  and the datasets call it).
- `fbank` and `extract_input_values`: batched log-mel features; on the CPU they run the fast path
  (tested equal to the step-by-step reference), elsewhere (CUDA) the reference vectorised over
  each clip's frames.
- `ASTFeatureExtractor` / `BatchFeature`: the options, call and settings file of
  `transformers.ASTFeatureExtractor`.
- `compute_norm_stats`: a dataset's mean and std, for the extractor's normalisation.

Shape legend: B batch, N samples, T frames, F mel bins (num_mel_bins).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

import numpy as np
import torch

from ast_min import compat, features_fast, files
from ast_min.audio import check_samples, load_audio
from ast_min.features import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    FRAME_LENGTH,
    LOG_FLOOR,
    MAX_LENGTH,
    NUM_MEL_BINS,
    SAMPLING_RATE,
    log_mel_spectrogram,
    normalize,
    num_frames,
    samples_for_frames,
)

PREPROCESSOR_CONFIG = "preprocessor_config.json"
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Every log-mel value lies between the log of the floor and the log of float32's largest value.
LOG_MEL_RANGE = (math.log(LOG_FLOOR), math.log(FLOAT32_MAX))
# integer PCM dtypes scaled to [-1, 1) (as soundfile and torchaudio do), and their full scale
PCM_FULL_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, torch.int16: 2.0**15, torch.int32: 2.0**31}


# ---- input checking ---------------------------------------------------------------------------------
def to_clips(raw, *, strict: bool) -> tuple[list[torch.Tensor], bool]:
    """Audio -> checked list of 1-D float tensors (float32 or float64), and whether the input was torch.

    strict (`fbank`, `extract_input_values`): a (B, N) tensor or a sequence of 1-D tensors of
    float samples. Otherwise (the extractor, as transformers): also numpy arrays and lists of
    numbers, one clip (N,) as a batch of one, and int16/int32 PCM scaled to [-1, 1).
    Tensors stay on their device; a tensor that requires grad is detached (the fast path is
    not differentiable).
    """
    if isinstance(raw, (torch.Tensor, np.ndarray)):
        if raw.ndim != 2 and (strict or raw.ndim not in (1, 2)):
            want = "a (B, N) batch of mono waveforms" if strict else "one mono clip (N,) or a batch (B, N)"
            raise ValueError(
                f"expected {want}, got shape {tuple(raw.shape)}: use waveform[None] for one clip, and "
                "downmix channels by averaging them (ast_min.load_audio does)"
            )
        items = [raw] if raw.ndim == 1 else list(raw)
    elif isinstance(raw, (list, tuple)):
        batched = strict or not raw or isinstance(raw[0], (np.ndarray, torch.Tensor, list, tuple))
        items = list(raw) if batched else [raw]
    else:
        raise ValueError(
            f"raw_speech must be a numpy array, a torch tensor or a list of them, got {type(raw).__name__}"
        )
    if not items:  # [], or a (0, N) batch
        raise ValueError("no clips given: pass at least one waveform" if strict else "raw_speech is empty: pass at least one clip")
    clips = [_to_tensor(item, i, strict) for i, item in enumerate(items)]
    for i, clip in enumerate(clips):
        if clip.device != clips[0].device:
            raise ValueError(f"clip {i} is on {clip.device} but clip 0 is on {clips[0].device}: move all clips to one device")
        _check_length(clip, i)
    return clips, all(isinstance(item, torch.Tensor) for item in items)


def _to_tensor(item, index: int, strict: bool) -> torch.Tensor:
    """One clip -> 1-D float tensor; int16/int32 PCM scaled unless strict, everything else refused by name."""
    if isinstance(item, (list, tuple)) and not strict:
        item = np.asarray(item, dtype=np.float32)  # python numbers, as transformers reads them
    if isinstance(item, np.ndarray) and not strict:
        dtype = item.dtype
        if dtype.kind not in "iubfc":
            raise ValueError(f"clip {index} has dtype {dtype}: pass real float samples in [-1, 1)")
        # torch reads only the native byte order: a big-endian array (`np.frombuffer(data, ">i2")`) is swapped into it
        item = torch.from_numpy(np.ascontiguousarray(item, dtype=dtype.newbyteorder("=")))
    if not isinstance(item, torch.Tensor):
        kind = "1-D torch tensor" if strict else "numpy array or torch tensor"
        shape = tuple(item.shape) if hasattr(item, "shape") else type(item).__name__
        raise ValueError(f"clip {index} must be a {kind} of samples, got {shape}")
    if item.dim() != 1:
        raise ValueError(
            f"clip {index} has shape {tuple(item.shape)}, not (N,): pass mono audio "
            "(average the channels; ast_min.load_audio downmixes files)"
        )
    if item.is_complex():
        raise ValueError(f"clip {index} has complex dtype {item.dtype}: pass real float samples in [-1, 1)")
    if item.requires_grad:
        item = item.detach()  # features are computed by in-place kernels, not through autograd
    if not item.is_floating_point():
        if strict:
            raise ValueError(
                f"clip {index} has dtype {item.dtype}: pass float samples in [-1, 1) "
                "(ASTFeatureExtractor scales int16/int32 PCM for you)"
            )
        if item.dtype not in PCM_FULL_SCALE:
            raise ValueError(
                f"clip {index} has integer dtype {str(item.dtype).removeprefix('torch.')}: int16 and int32 PCM are "
                "scaled to [-1, 1) automatically; convert other integer audio to float samples in [-1, 1) "
                "yourself (e.g. (x - 128) / 128 for uint8)"
            )
        return item.to(torch.float32) / PCM_FULL_SCALE[item.dtype]
    if item.dtype not in (torch.float32, torch.float64):
        item = item.to(torch.float32)  # float16 / bfloat16 read as float32
    return item


def _check_length(clip: torch.Tensor, index: int) -> None:
    """Refuse clips the front end cannot turn into frames, naming the clip and the fix."""
    n = clip.shape[-1]
    if n == 0:
        raise ValueError(f"clip {index} is empty (0 samples): drop it, or check that the file decoded")
    if n < FRAME_LENGTH:
        # The original repo dies here with an obscure assertion and transformers silently returns
        # pure padding. Neither helps: a clip under 25 ms is almost always a decoding or cutting bug.
        raise ValueError(
            f"clip {index} has {n} samples, fewer than one {FRAME_LENGTH}-sample (25 ms) frame: "
            f"pad it with zeros to at least {FRAME_LENGTH} samples (e.g. numpy.pad) or drop it"
        )


def require_one_frame(path, waveform: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> None:
    """Refuse a decoded file shorter than one frame, naming it: the front end has nothing to compute.

    The bound is `_check_length`'s, FRAME_LENGTH samples at any rate (the frame arithmetic counts
    samples), so a file accepted here is never refused later inside a batch as "clip i".
    """
    if len(waveform) < FRAME_LENGTH:
        raise ValueError(
            f"{os.fspath(path)!r} lasts {1000 * len(waveform) / sampling_rate:.1f} ms, shorter than one "
            f"{1000 * FRAME_LENGTH / sampling_rate:g} ms frame ({FRAME_LENGTH} samples at "
            f"{sampling_rate / 1000:g} kHz): AST needs at least one frame of audio"
        )


def check_finite(clip: torch.Tensor, index: int) -> None:
    """Refuse a clip with NaN or Inf samples, or samples beyond +-MAX_PEAK, naming the clip and the first bad sample.

    The front end's own guard, for every clip whatever its source (the commands check files first,
    with `ast_min.audio.check_samples`, the same rule, so that the message names the file).

    Why MAX_PEAK (2^15) keeps every float32 value finite: with |x| <= A, pre-emphasis and DC
    removal give z[n] = x[n] - 0.97 x[n-1] - 0.03 m (m the frame mean, features_fast trick 1),
    so |z| <= 2A, and the window is <= 1; a frame's energy is sum z^2 <= 400 (2A)^2, and by
    Parseval the 257 power bins sum to at most 512 times that, 8.2e5 A^2. A mel energy (triangle
    weights <= 1) is at most that sum, times e^40 when the fast path folds a mean of magnitude <= 40
    into the filterbank: 2.1e32 at A = 2^15, six orders below float32's largest value 3.4e38.
    Samples of 1e20 would give a power of 1e40 = inf, and inf * 0 weights = NaN features.
    """
    check_samples(clip, f"clip {index}")


def check_options(num_mel_bins, max_length, do_normalize, mean, std, sampling_rate=SAMPLING_RATE) -> None:
    """Refuse front-end settings that would crash later or give NaN/constant features, naming the setting."""
    check_counts(num_mel_bins=num_mel_bins, max_length=max_length, sampling_rate=sampling_rate)
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(
                f"{name} must be a finite number, got {value!r}: compute it with ast_min.compute_norm_stats "
                f"(or keep the AudioSet default {AUDIOSET_MEAN if name == 'mean' else AUDIOSET_STD})"
            )
    if do_normalize:
        check_normalization(mean, std)


def check_normalization(mean: float, std: float, names: tuple[str, str] = ("mean", "std")) -> None:
    """Refuse a finite (mean, std) that cannot normalise, (x - mean) / (2 std), to finite float32 values.

    std must be positive; and since log-mel values x lie in LOG_MEL_RANGE, every normalised value
    stays within float32's range (with a factor 2 to spare for rounding) exactly when the mean is and
    both ends of that range, moved by the mean and divided by 2 std, are. `names` are what the
    messages call the two settings ("--mean", "--std" on the command line).
    """
    if not std > 0:
        raise ValueError(f"{names[1]} must be positive to normalise, got {std}: compute it with ast_min.compute_norm_stats")
    low, high = LOG_MEL_RANGE
    reach = max(abs(low - mean), abs(high - mean)) / (2 * std)
    if not (abs(mean) <= FLOAT32_MAX / 2 and reach <= FLOAT32_MAX / 2):
        raise ValueError(
            f"{names[0]} {mean:g} and {names[1]} {std:g} would normalise log-mel values (which lie in "
            f"[{low:.1f}, {high:.1f}]) past float32's range, to Inf or NaN features: give the dataset's statistics "
            "(ast_min.compute_norm_stats), whose mean lies in that range and whose std is not tiny"
        )


def check_counts(**counts) -> None:
    """Refuse a size setting (num_mel_bins=..., max_length=...) that is not a positive integer, by name."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


# ---- batched entry points -----------------------------------------------------------------------------
def fbank(
    waveforms: torch.Tensor | Sequence[torch.Tensor],
    *,
    num_mel_bins: int = NUM_MEL_BINS,
    sampling_rate: int = SAMPLING_RATE,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | list[torch.Tensor]:
    """Log-mel spectrograms, not padded and not normalised: Kaldi's `fbank` as AST uses it.

    waveforms: a (B, N) tensor, or a list of 1-D tensors of different lengths N_i, float samples
    in [-1, 1) at `sampling_rate`, on any device. Returns (B, T, F) for a tensor and a list of
    (T_i, F) for a list, T = 1 + (N - 400) // 160, in `dtype` (float32 or float64) on the input's
    device. Raises ValueError for empty clips, clips under 400 samples and NaN/Inf samples.
    """
    check_counts(num_mel_bins=num_mel_bins, sampling_rate=sampling_rate)
    _check_dtype(dtype)
    clips, _ = to_clips(waveforms, strict=True)
    if isinstance(waveforms, torch.Tensor):
        out = _empty((len(clips), num_frames(clips[0].shape[-1]), num_mel_bins), dtype, clips[0].device)
    else:
        out = [_empty((num_frames(c.shape[-1]), num_mel_bins), dtype, c.device) for c in clips]
    _log_mel_batch(list(out), clips, num_mel_bins, sampling_rate, norm=None, padding_value=0.0)
    return out


def extract_input_values(
    waveforms: torch.Tensor | Sequence[torch.Tensor],
    *,
    num_mel_bins: int = NUM_MEL_BINS,
    max_length: int = MAX_LENGTH,
    do_normalize: bool = True,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    sampling_rate: int = SAMPLING_RATE,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's input: log-mel padded with zeros or truncated to max_length, then normalised.

    waveforms: as for `fbank`. Returns input_values (B, max_length, F) in `dtype` on the input's
    device, and num_frames (B,) int64, the frames of each clip before padding/truncation (frames
    past max_length are never computed). Equals pad_or_truncate + normalize applied to `fbank`.
    """
    check_options(num_mel_bins, max_length, do_normalize, mean, std, sampling_rate)
    _check_dtype(dtype)
    clips, _ = to_clips(waveforms, strict=True)
    return _input_values(clips, num_mel_bins, max_length, (mean, std) if do_normalize else None, sampling_rate, dtype)


def _input_values(clips, num_mel_bins, max_length, norm, sampling_rate, dtype=torch.float32):
    device = clips[0].device
    padding = normalize(torch.tensor(0.0, dtype=torch.float64), *norm).item() if norm is not None else 0.0
    lengths = torch.tensor([num_frames(c.shape[-1]) for c in clips], dtype=torch.int64, device=device)
    # Uninitialised: every row is written once, by the worker computing its clip (features or padding).
    input_values = _empty((len(clips), max_length, num_mel_bins), dtype, device)
    _log_mel_batch(list(input_values), clips, num_mel_bins, sampling_rate, norm=norm, padding_value=padding)
    return input_values, lengths


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")


def _empty(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised output tensor. On the CPU its memory comes from numpy, which asks Linux for
    huge pages on large arrays (madvise), so first touching a fresh batch output costs fewer page
    faults than torch's 4 KiB pages; torch shares the memory, no copy."""
    if device.type == "cpu":
        return torch.from_numpy(np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64))
    return torch.empty(shape, dtype=dtype, device=device)


def _log_mel_batch(outs: list[torch.Tensor], clips: list[torch.Tensor], num_mel_bins, sampling_rate, norm, padding_value):
    """For each clip (N_i,), its first min(T_i, len(out)) frames into outs[i] (T_out, F), the rest padding."""
    if clips[0].device.type == "cpu":
        features_fast.log_mel_batch_into(
            outs, clips, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate, norm=norm,
            padding_value=padding_value, check=check_finite,
        )  # fmt: skip
    else:
        _log_mel_batch_vectorised(outs, clips, num_mel_bins, sampling_rate, norm, padding_value)


def _log_mel_batch_vectorised(outs, clips, num_mel_bins, sampling_rate, norm, padding_value):
    """`_log_mel_batch` for accelerators: the step-by-step reference, vectorised over each clip's frames.

    On a GPU one wide kernel per step beats the CPU path's per-thread loop; works on any device.
    """
    for i, (clip, out) in enumerate(zip(clips, outs)):
        check_finite(clip, i)
        t = min(out.shape[0], num_frames(clip.shape[-1]))
        needed = clip[: samples_for_frames(t)].to(out.dtype)  # only the samples of the frames kept
        features = log_mel_spectrogram(needed, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate)  # (t, F)
        out[:t] = normalize(features, *norm) if norm is not None else features
        out[t:] = padding_value


# ---- the transformers-compatible extractor ----------------------------------------------------------------------
class BatchFeature(dict):
    """A dict whose keys are also attributes (`features.input_values`), like transformers' BatchFeature."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, *args, **kwargs) -> "BatchFeature":
        """Move the tensors (`.to("cuda")`) or cast the floating ones (`.to(torch.float16)`), in place, as transformers."""
        device = kwargs.get("device", next((a for a in args if isinstance(a, (str, torch.device, int))), None))
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                self[key] = value.to(*args, **kwargs) if value.is_floating_point() else value.to(device=device)
        return self


class ASTFeatureExtractor(compat.JsonSettings):
    """AST's feature extractor with the options and call of `transformers.ASTFeatureExtractor`.

    Code written for transformers ports by changing the import. Differences: torch tensors are
    accepted as input ((B, N) or a list of 1-D tensors, on any device; the output stays there),
    the batch is computed in one vectorised call rather than a Python loop, int16/int32 PCM is
    scaled to [-1, 1), and bad input (clips shorter than one frame, NaN samples, bad settings)
    raises a ValueError that says how to fix it. Like transformers, features are padded with zeros
    before normalisation (`padding_value` is kept for compatibility only), `return_attention_mask`
    is stored but no mask is returned (the model takes none), and the frame arithmetic is fixed at
    25 ms / 10 ms of 16 kHz audio.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = SAMPLING_RATE,
        num_mel_bins: int = NUM_MEL_BINS,
        max_length: int = MAX_LENGTH,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        return_attention_mask: bool = False,
        **kwargs,
    ):
        check_options(num_mel_bins, max_length, do_normalize, mean, std, sampling_rate)  # before any audio
        self.feature_size = feature_size
        self.sampling_rate = sampling_rate
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.padding_value = padding_value
        self.do_normalize = do_normalize
        self.mean = mean
        self.std = std
        self.return_attention_mask = return_attention_mask
        self.padding_side = kwargs.pop("padding_side", "right")
        # Keys transformers writes that do not change the features (feature_extractor_type,
        # processor_class, ...) are accepted and ignored, so any preprocessor_config.json loads.

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one clip or a batch: `input_values` (B, max_length, num_mel_bins), normalised.

        raw_speech: one clip (a 1-D numpy array, list of floats or tensor) or a batch (a 2-D array
        or tensor (B, N), or a list of 1-D arrays/tensors of any lengths). Always returns a batch.
        return_tensors: "pt" (torch), "np" (numpy) or None: a list of (max_length, F) numpy arrays
        like transformers for numpy/list input, and a tensor on the input's device for tensor
        input. Other keyword arguments transformers accepts (return_attention_mask, padding, ...)
        are accepted and, as there, change nothing.
        """
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"the audio is sampled at {sampling_rate} Hz but this feature extractor expects "
                f"{self.sampling_rate} Hz: resample it first (ast_min.load_audio(path) resamples files to "
                f"{self.sampling_rate} Hz; ast_min.audio.resample does arrays)"
            )
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        clips, from_torch = to_clips(raw_speech, strict=False)
        norm = (self.mean, self.std) if self.do_normalize else None
        input_values, _ = _input_values(clips, self.num_mel_bins, self.max_length, norm, self.sampling_rate)
        out = BatchFeature(input_values=input_values)
        return _as_requested(out, return_tensors, from_torch)

    def pad(
        self,
        processed_features,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Pad a batch of sequences to one length, as transformers' SequenceFeatureExtractor.pad.

        processed_features: a dict with "input_values" (a list of (T_i,) or (T_i, F) arrays, tensors
        or lists) or a list of such dicts (what a data collator gets). padding: True / "longest" pads
        to the longest, "max_length" to `max_length` (required), False / "do_not_pad" leaves the
        lengths. truncation (needs max_length) cuts longer rows; pad_to_multiple_of rounds the
        target length up. Padding rows hold `padding_value` on the `padding_side`; `attention_mask`
        (B, T) int32 marks the real rows when requested. return_tensors None answers in the input's kind
        (torch in, torch out); rows left unequal are an object array for numpy and refused for torch.
        """
        if isinstance(processed_features, (list, tuple)):
            if not processed_features:
                raise ValueError("pad got no features: pass at least one {'input_values': ...}")
            processed_features = {k: [f[k] for f in processed_features] for k in processed_features[0]}
        if "input_values" not in processed_features:
            raise ValueError(f"pad needs 'input_values', got the keys {sorted(processed_features)}")
        if len(processed_features["input_values"]) == 0:
            raise ValueError("pad got no input_values rows: pass at least one sequence")
        strategy = {True: "longest", "longest": "longest", "max_length": "max_length", False: None, "do_not_pad": None}.get(padding, "?")
        if strategy == "?":
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if (strategy == "max_length" or truncation) and max_length is None:
            raise ValueError("padding='max_length' and truncation=True need max_length=N")
        first = processed_features["input_values"][0]
        if return_tensors is None:  # transformers answers in the input's kind
            return_tensors = "pt" if isinstance(first, torch.Tensor) else "np"
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        rows = [_float_rows(v) for v in processed_features["input_values"]]
        if truncation:
            rows = [row[: _round_up(max_length, pad_to_multiple_of)] for row in rows]
        target = max(len(row) for row in rows) if strategy == "longest" else max_length
        target = _round_up(target, pad_to_multiple_of) if strategy else None
        padded, masks = [], []
        for row in rows:
            missing = max(target - len(row), 0) if target is not None else 0
            if missing and self.padding_side not in ("right", "left"):  # refused, as transformers, only when it pads
                raise ValueError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
            fill = np.full((missing, *row.shape[1:]), self.padding_value, dtype=row.dtype)
            mask = np.r_[np.ones(len(row), np.int32), np.zeros(missing, np.int32)]
            if self.padding_side == "left":
                padded.append(np.concatenate([fill, row]))
                masks.append(mask[::-1].copy())
            else:
                padded.append(np.concatenate([row, fill]))
                masks.append(mask)
        out = BatchFeature(input_values=padded)
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            out["attention_mask"] = masks
        for key, value in out.items():
            if len({row.shape for row in value}) == 1:
                stacked = np.stack(value)
                out[key] = torch.from_numpy(stacked) if return_tensors == "pt" else stacked
            elif return_tensors == "pt":
                raise ValueError(
                    f"the {key} rows have unequal lengths and cannot be one tensor: pad them (padding=True) "
                    "or ask for numpy (return_tensors='np')"
                )
            else:  # as transformers: a numpy array of rows of unequal length
                ragged = np.empty(len(value), dtype=object)
                ragged[:] = value
                out[key] = ragged
        return out

    # ---- preprocessor_config.json -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields as transformers writes them in preprocessor_config.json."""
        return {
            "feature_extractor_type": "ASTFeatureExtractor",
            "feature_size": self.feature_size,
            "sampling_rate": self.sampling_rate,
            "num_mel_bins": self.num_mel_bins,
            "max_length": self.max_length,
            "padding_value": self.padding_value,
            "padding_side": self.padding_side,
            "do_normalize": self.do_normalize,
            "mean": self.mean,
            "std": self.std,
            "return_attention_mask": self.return_attention_mask,
        }

    @classmethod
    def from_dict(cls, settings: dict, **overrides) -> "ASTFeatureExtractor":
        if not isinstance(settings, dict):
            raise ValueError(f"feature-extractor settings must be a dict, got a {type(settings).__name__}")
        return cls(**{**settings, **overrides})

    def save_pretrained(self, directory: str | os.PathLike, **options) -> list[str]:
        """Write `directory/preprocessor_config.json` (readable by transformers' from_pretrained) all-or-nothing.

        Returns the list of files written, as transformers does.
        """
        return [files.write_json(os.path.join(os.fspath(directory), PREPROCESSOR_CONFIG), self.to_dict())]

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, **kwargs) -> "ASTFeatureExtractor":
        """Read `preprocessor_config.json` from a checkpoint directory, the file itself or a hub id
        (`subfolder=`, `revision=`, ...); other keyword arguments override the stored settings."""
        hub, overrides = compat.split_hub_options(kwargs)
        file = compat.settings_file(path_or_hub_id, PREPROCESSOR_CONFIG, hub)
        if not file.is_file():
            raise FileNotFoundError(
                f"no {PREPROCESSOR_CONFIG} at {os.fspath(file)!r}: pass a checkpoint directory that has one, "
                "or build ASTFeatureExtractor(...) with explicit arguments"
            )
        settings = files.read_json_object(file, "feature extractor")
        try:
            return cls.from_dict(settings, **overrides)
        except ValueError as e:
            raise ValueError(f"{os.fspath(file)!r}: {e}") from None

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "feature_extractor_type")
        return f"ASTFeatureExtractor({inner})"


def _round_up(length: int | None, multiple: int | None) -> int | None:
    if length is None or not multiple:
        return length
    return -(-length // multiple) * multiple


def _float_rows(value) -> np.ndarray:
    """One sequence for `pad` as a numpy array; float64 and python floats become float32, as transformers."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float64 else array


def _as_requested(out: BatchFeature, return_tensors: str | None, from_torch: bool) -> BatchFeature:
    """Tensors for "pt" (and torch input), numpy for "np", transformers' list of arrays for None."""
    if return_tensors == "np" or (return_tensors is None and not from_torch):
        for key, value in out.items():
            if isinstance(value, torch.Tensor):
                out[key] = value.cpu().numpy()
                if return_tensors is None:  # transformers' un-tensored output: a list per clip
                    out[key] = list(out[key])
    return out


# ---- dataset statistics --------------------------------------------------------------------------------------------------
def compute_norm_stats(
    waveforms,
    *,
    num_mel_bins: int = NUM_MEL_BINS,
    max_length: int | None = MAX_LENGTH,
    sampling_rate: int = SAMPLING_RATE,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[float, float]:
    """A dataset's (mean, std) of un-normalised log-mel features, for ASTFeatureExtractor(mean=..., std=...).

    waveforms: a (B, N) array/tensor, or any iterable of 1-D arrays/tensors or audio file paths
    (read with `load_audio`); consumed once, `batch_size` clips at a time. As the original repo's
    `src/get_norm_stats.py`, each clip's features are padded/truncated to `max_length` frames
    (padding zeros included, as during training; max_length=None uses only the real frames), and
    the result is the **mean over clips of each clip's mean** and the **mean over clips of each
    clip's standard deviation** (unbiased, torch.std), not the pooled std of all values. The
    original averages over batches of clips instead; per clip makes the result independent of
    the batch size. Feed the training set only.
    """
    check_counts(num_mel_bins=num_mel_bins, sampling_rate=sampling_rate, batch_size=batch_size)
    if max_length is not None:
        check_counts(max_length=max_length)  # 0 frames would average nothing: (nan, nan)
    means, stds = [], []

    def flush(batch):
        clips, _ = to_clips(batch, strict=False)
        if max_length is None:
            out = [_empty((num_frames(c.shape[-1]), num_mel_bins), torch.float32, c.device) for c in clips]
            _log_mel_batch(out, clips, num_mel_bins, sampling_rate, norm=None, padding_value=0.0)
            for features in out:
                means.append(features.double().mean().item())
                stds.append(features.double().std().item())
        else:
            values, _ = _input_values(clips, num_mel_bins, max_length, None, sampling_rate)
            values = values.flatten(1).double()  # (B, max_length * F)
            means.extend(values.mean(dim=1).tolist())
            stds.extend(values.std(dim=1).tolist())

    if isinstance(waveforms, (np.ndarray, torch.Tensor)) and waveforms.ndim == 2:
        waveforms = list(waveforms)
    if isinstance(waveforms, (str, os.PathLike, np.ndarray, torch.Tensor)):
        raise ValueError("compute_norm_stats takes a collection of clips: a (B, N) array or an iterable of clips/paths")
    if progress:
        from tqdm.auto import tqdm  # imported on request: tqdm's notebook detection is slow to import

        waveforms = tqdm(waveforms, desc="norm stats", unit="clip")
    batch = []
    for clip in waveforms:
        if isinstance(clip, (str, os.PathLike)):
            path, clip = clip, load_audio(clip, sampling_rate)
            require_one_frame(path, clip, sampling_rate)  # by its file: to_clips knows only its place in the batch
        batch.append(clip)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not means:
        raise ValueError("compute_norm_stats got no clips: pass at least one waveform or file")
    return float(np.mean(means)), float(np.mean(stds))
