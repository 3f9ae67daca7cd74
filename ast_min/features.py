"""The log-mel front end of AST: Kaldi's `fbank` as the paper (Gong et al. 2021, section 2.1) uses it.

A waveform becomes a (T, F) log-mel spectrogram in eight small steps, each a function below, read in
order (docs/DESIGN.md, "The front end", lists every numerical fact):

    frame_signal     (N,) -> (T, 400)     25 ms frames every 10 ms, Kaldi's snip_edges
    remove_dc        (T, 400)             subtract each frame's mean
    pre_emphasis     (T, 400)             x[n] - 0.97 x[n-1], inside each frame
    hanning_window   (400,)               Kaldi's symmetric Hann window
    power_spectrum   (T, 400) -> (T, 257) |rFFT-512|^2
    mel_filterbank   (257, F)             triangles equally spaced on the mel scale, 20 Hz .. Nyquist
    log_mel          (T, 257) -> (T, F)   log(max(power @ filterbank, float32 eps))
    pad_or_truncate  (T, F) -> (max_length, F)
    normalize        (x - mean) / (2 std)

The original repository subtracts each waveform's mean before `fbank`; transformers does not, and
neither does ast-min (that is how the hub checkpoint is used). It makes no difference beyond
rounding: a constant offset is part of every frame's mean, which step 2 removes.

`log_mel_spectrogram` composes them: the readable reference. `fbank` and `extract_input_values`
are the entry points the extractor and training use; on the CPU they run the fast path of
`ast_min.features_fast` (tested equal to the reference), elsewhere (CUDA) the reference vectorised
over the batch. `ASTFeatureExtractor` wraps them with the call signature of
`transformers.ASTFeatureExtractor`, and `compute_norm_stats` gives a dataset's mean and std.

Shape legend: B batch, N samples, T frames, F mel bins (num_mel_bins), K FFT bins (257).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ast_min.audio import load_audio  # light: soundfile and soxr are imported on first use

SAMPLING_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
FFT_LENGTH = 512  # the next power of two above FRAME_LENGTH; K = 257 bins
PREEMPHASIS = 0.97
LOW_FREQ = 20.0  # Hz: Kaldi's default lower edge of the first mel triangle
LOG_FLOOR = float(np.finfo(np.float32).eps)  # 1.1920929e-07, Kaldi's and transformers' floor
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
NUM_MEL_BINS = 128  # F of the released AST checkpoints: every entry point's default
MAX_LENGTH = 1024  # frames per clip the AudioSet checkpoints take: 10.24 s at the 10 ms shift


# ---- 1. framing ---------------------------------------------------------------------------------
def num_frames(num_samples: int, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT) -> int:
    """Frames Kaldi's `snip_edges=True` cuts from N samples: 1 + (N - 400) // 160, none below 400."""
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_shift


def samples_for_frames(num_frames: int, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT) -> int:
    """Samples a clip needs to give exactly `num_frames` frames: the inverse of `num_frames`."""
    return frame_length + (num_frames - 1) * frame_shift


def frame_signal(waveform: torch.Tensor, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT) -> torch.Tensor:
    """Cut (..., N) into overlapping frames (..., T, frame_length); samples after the last whole frame are dropped.

    `unfold` returns a strided view, so the 2.5x overlap costs no copy until a later step writes.
    """
    if waveform.shape[-1] < frame_length:  # no whole frame: (..., 0, L), as Kaldi
        return waveform.new_zeros(*waveform.shape[:-1], 0, frame_length)
    return waveform.unfold(-1, frame_length, frame_shift)  # (..., T, 400)


# ---- 2. per-frame DC removal ----------------------------------------------------------------------
def remove_dc(frames: torch.Tensor) -> torch.Tensor:
    """Subtract each frame's mean, (..., T, L) -> (..., T, L): a DC offset would leak into the low bins."""
    return frames - frames.mean(dim=-1, keepdim=True)


# ---- 3. pre-emphasis --------------------------------------------------------------------------------
def pre_emphasis(frames: torch.Tensor, coeff: float = PREEMPHASIS) -> torch.Tensor:
    """y[n] = x[n] - coeff * x[n-1] inside each frame, (..., T, L) -> (..., T, L).

    Kaldi filters each frame on its own, not the whole signal, so frame n's first sample has no
    predecessor; Kaldi uses the sample itself, giving y[0] = (1 - coeff) x[0]. (The Hann window is
    zero there anyway, but this keeps the step exact for any window.)
    """
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # (..., T, L) shifted right by one
    return frames - coeff * previous


# ---- 4. window ----------------------------------------------------------------------------------------
def hanning_window(length: int = FRAME_LENGTH, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Kaldi's "hanning" window, (L,): 0.5 - 0.5 cos(2 pi n / (L - 1)).

    Symmetric (divides by L - 1, zero at both ends), unlike `torch.hann_window`'s default periodic
    window, which divides by L.
    """
    n = torch.arange(length, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))
    return window.to(dtype=dtype, device=device)


# ---- 5. power spectrum ----------------------------------------------------------------------------------
def power_spectrum(frames: torch.Tensor, fft_length: int = FFT_LENGTH) -> torch.Tensor:
    """|rFFT|^2 of frames zero-padded to fft_length, (..., T, L) -> (..., T, fft_length // 2 + 1)."""
    spectrum = torch.fft.rfft(frames, n=fft_length)  # (..., T, K) complex
    return spectrum.real.square() + spectrum.imag.square()  # exact |X|^2, no sqrt round trip


# ---- 6. mel filterbank ------------------------------------------------------------------------------------
def hz_to_mel(hz):
    """Kaldi's (HTK's) mel scale: 1127 ln(1 + f / 700). Works on floats, numpy arrays and tensors."""
    log = torch.log1p if isinstance(hz, torch.Tensor) else np.log1p
    return 1127.0 * log(hz / 700.0)


def mel_filterbank(
    num_mel_bins: int = NUM_MEL_BINS,
    *,
    sampling_rate: int = SAMPLING_RATE,
    fft_length: int = FFT_LENGTH,
    low_freq: float = LOW_FREQ,
    high_freq: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Kaldi's mel filterbank as a (K, F) matrix, K = fft_length // 2 + 1: `power @ filterbank` is the mel energy.

    F + 2 edge points are equally spaced in mel between low_freq and high_freq (default: Nyquist);
    filter f rises linearly *in mel* from point f to its centre f + 1 (weight 1) and falls to point
    f + 2. The weights are not area-normalised (Kaldi's choice, kept by AST).

    At 128 bins and 16 kHz the low triangles are narrower than the 31.25 Hz spacing of the FFT
    bins and filter 3 catches no bin centre: its column is all zeros and its log energy is the
    floor, log(eps). Kaldi's C++ refuses that configuration; torchaudio and transformers keep it,
    and the AudioSet checkpoint was trained with it, so it is kept here too.
    """
    if num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be at least 1, got {num_mel_bins}")
    nyquist = sampling_rate / 2
    high_freq = nyquist if high_freq is None else high_freq
    if not 0 <= low_freq < high_freq <= nyquist:
        raise ValueError(
            f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz), got {low_freq} and {high_freq}"
        )
    mel_low, mel_high = hz_to_mel(low_freq), hz_to_mel(high_freq)
    edges = mel_low + (mel_high - mel_low) / (num_mel_bins + 1) * np.arange(num_mel_bins + 2)  # (F + 2,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (F,) each
    bin_mels = hz_to_mel(np.arange(fft_length // 2 + 1) * sampling_rate / fft_length)[:, None]  # (K, 1)
    rising = (bin_mels - left) / (centre - left)  # (K, F)
    falling = (right - bin_mels) / (right - centre)  # (K, F)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)  # zero outside (left, right)
    return torch.from_numpy(weights).to(dtype)


# ---- 7. log -------------------------------------------------------------------------------------------------
def log_mel(power: torch.Tensor, filterbank: torch.Tensor) -> torch.Tensor:
    """log(max(power @ filterbank, eps)), (..., T, K) -> (..., T, F).

    The floor (float32 eps) keeps silent frames and the empty filter finite: log(eps) = -15.94.
    """
    return torch.clamp_min(power @ filterbank, LOG_FLOOR).log()


# ---- 8. length and scale --------------------------------------------------------------------------------------
def pad_or_truncate(features: torch.Tensor, max_length: int, padding_value: float = 0.0) -> torch.Tensor:
    """(T, F) -> (max_length, F): zero rows appended (before normalisation, as transformers), or the tail cut."""
    missing = max_length - features.shape[-2]
    if missing <= 0:
        return features[..., :max_length, :]
    return torch.nn.functional.pad(features, (0, 0, 0, missing), value=padding_value)


def normalize(features: torch.Tensor, mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> torch.Tensor:
    """(x - mean) / (2 std): the AST recipe, which targets mean 0 and std 0.5 rather than 1."""
    return (features - mean) / (2 * std)


# ---- the composition: the readable reference ---------------------------------------------------------------------
def log_mel_spectrogram(
    waveforms: torch.Tensor, *, num_mel_bins: int = NUM_MEL_BINS, sampling_rate: int = SAMPLING_RATE
) -> torch.Tensor:
    """The steps above in order, vectorised over a batch: (..., N) -> (..., T, F), in the input's dtype.

    This is the reference the fast path is tested against; it does no input checking.
    """
    frames = frame_signal(waveforms)  # (..., T, 400)
    frames = pre_emphasis(remove_dc(frames))
    frames = frames * hanning_window(FRAME_LENGTH, dtype=frames.dtype, device=frames.device)
    power = power_spectrum(frames)  # (..., T, 257)
    filterbank = mel_filterbank(num_mel_bins, sampling_rate=sampling_rate, dtype=frames.dtype).to(frames.device)
    return log_mel(power, filterbank)  # (..., T, F)


# ---- input checking -----------------------------------------------------------------------------------------------
def _check_clip(clip: torch.Tensor, index: int) -> None:
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


def check_finite(clip: torch.Tensor, index: int) -> None:
    """Refuse a clip with NaN or Inf samples, naming the clip and the first bad sample.

    One sum decides: NaN or +-Inf anywhere makes it non-finite (so would finite samples beyond
    ~1e34, which are refused too). Only then is the clip searched; `isfinite(clip).all()` on every
    clip cost ~35x the sum (a 10 s clip, one thread, measured).
    """
    if math.isfinite(float(clip.sum())):
        return
    bad = (~torch.isfinite(clip)).nonzero()
    if len(bad) == 0:
        raise ValueError(
            f"clip {index} has samples up to {float(clip.abs().max()):.3g}, too large to sum: "
            "scale the audio to [-1, 1) (divide integer PCM by its full scale, e.g. 32768)"
        )
    raise ValueError(
        f"clip {index} has NaN or Inf samples (the first at sample {int(bad[0, -1])}): "
        "fix or drop the clip (e.g. numpy.nan_to_num) before computing features"
    )


def _check_options(num_mel_bins: int, max_length: int, do_normalize: bool, std: float) -> None:
    if num_mel_bins < 1 or max_length < 1:
        raise ValueError(f"num_mel_bins and max_length must be at least 1, got {num_mel_bins} and {max_length}")
    if do_normalize and not std > 0:
        raise ValueError(f"std must be positive to normalise, got {std}: compute it with ast_min.compute_norm_stats")


def _as_clips(waveforms, dtype: torch.dtype) -> tuple[list[torch.Tensor], bool]:
    """(B, N) tensor or a list of 1-D tensors -> checked list of 1-D float tensors, and whether input was a list."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if isinstance(waveforms, torch.Tensor):
        if waveforms.dim() != 2:
            raise ValueError(
                f"expected a (B, N) batch of mono waveforms, got shape {tuple(waveforms.shape)}: "
                "use waveform[None] for one clip, and downmix channels by averaging them"
            )
        clips, is_list = list(waveforms.unbind(0)), False
    else:
        clips, is_list = list(waveforms), True
    if not clips:
        raise ValueError("no clips given: pass at least one waveform")
    checked = []
    for i, clip in enumerate(clips):
        if not isinstance(clip, torch.Tensor) or clip.dim() != 1:
            shape = tuple(clip.shape) if hasattr(clip, "shape") else type(clip).__name__
            raise ValueError(f"clip {i} must be a 1-D torch tensor of samples, got {shape}")
        if not clip.is_floating_point():
            raise ValueError(
                f"clip {i} has dtype {clip.dtype}: pass float samples in [-1, 1) "
                "(ASTFeatureExtractor scales int16/int32 PCM for you)"
            )
        if clip.device != clips[0].device:
            raise ValueError(
                f"clip {i} is on {clip.device} but clip 0 is on {clips[0].device}: move all clips to one device"
            )
        _check_clip(clip, i)
        checked.append(clip)  # finiteness is checked by the worker that computes the clip
    return checked, is_list


# ---- batched entry points -------------------------------------------------------------------------------------------
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
    clips, is_list = _as_clips(waveforms, dtype)
    if is_list:
        out = [_empty((num_frames(c.shape[-1]), num_mel_bins), dtype, c.device) for c in clips]
    else:
        out = _empty((len(clips), num_frames(clips[0].shape[-1]), num_mel_bins), dtype, clips[0].device)
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
    _check_options(num_mel_bins, max_length, do_normalize, std)
    clips, _ = _as_clips(waveforms, dtype)
    device = clips[0].device
    padding = normalize(torch.tensor(0.0, dtype=torch.float64), mean, std).item() if do_normalize else 0.0
    lengths = torch.tensor([num_frames(c.shape[-1]) for c in clips], dtype=torch.int64, device=device)
    # Uninitialised: every row is written once, by the worker computing its clip (features or padding).
    input_values = _empty((len(clips), max_length, num_mel_bins), dtype, device)
    norm = (mean, std) if do_normalize else None
    _log_mel_batch(list(input_values), clips, num_mel_bins, sampling_rate, norm=norm, padding_value=padding)
    return input_values, lengths


def _empty(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised output tensor. On the CPU its memory comes from numpy, which asks Linux for
    huge pages on large arrays (madvise): first touching a fresh 64-clip output then costs ~70 us
    per clip instead of ~250 us of 4 KiB page faults, measured. torch shares the memory, no copy."""
    if device.type == "cpu":
        return torch.from_numpy(np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64))
    return torch.empty(shape, dtype=dtype, device=device)


def _log_mel_batch(outs: list[torch.Tensor], clips: list[torch.Tensor], num_mel_bins, sampling_rate, norm, padding_value):
    """For each clip (N_i,), its first min(T_i, len(out)) frames into outs[i] (T_out, F), the rest padding."""
    if clips[0].device.type == "cpu":
        from ast_min import features_fast

        features_fast.log_mel_batch_into(
            outs, clips, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate, norm=norm, padding_value=padding_value
        )
    else:
        _log_mel_batch_vectorised(outs, clips, num_mel_bins, sampling_rate, norm, padding_value)


def _log_mel_batch_vectorised(outs, clips, num_mel_bins, sampling_rate, norm, padding_value):
    """`_log_mel_batch` for accelerators: the step-by-step reference, vectorised over each clip's frames.

    On a GPU one wide kernel per step beats the CPU path's per-thread loop; works on any device.
    """
    for i, (clip, out) in enumerate(zip(clips, outs)):
        check_finite(clip, i)
        t = min(out.shape[0], num_frames(clip.shape[-1]))
        needed = clip[: (t - 1) * FRAME_SHIFT + FRAME_LENGTH].to(out.dtype)  # only the samples of the frames kept
        features = log_mel_spectrogram(needed, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate)  # (t, F)
        out[:t] = normalize(features, *norm) if norm is not None else features
        out[t:] = padding_value


# ---- the transformers-compatible extractor ----------------------------------------------------------------------------
class BatchFeature(dict):
    """A dict whose keys are also attributes (`features.input_values`), like transformers' BatchFeature."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# integer PCM dtypes scaled to [-1, 1) (as soundfile and torchaudio do), and their full scale
_PCM_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}
_TORCH_PCM_SCALE = {torch.int16: 2.0**15, torch.int32: 2.0**31}
PREPROCESSOR_CONFIG = "preprocessor_config.json"


class ASTFeatureExtractor:
    """AST's feature extractor with the options and call of `transformers.ASTFeatureExtractor`.

    Code written for transformers ports by changing the import. Differences: torch tensors are
    accepted as input ((B, N) or a list of 1-D tensors, on any device; the output stays there),
    the batch is computed in one vectorised call rather than a Python loop, int16/int32 PCM is
    scaled to [-1, 1), bad input raises a ValueError that says how to fix it, and
    `return_attention_mask` works (transformers accepts and ignores it). Like transformers,
    features are padded with zeros before normalisation (`padding_value` is kept for
    compatibility only) and the frame arithmetic is fixed at 25 ms / 10 ms of 16 kHz audio.
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
        _check_options(num_mel_bins, max_length, do_normalize, std)  # at construction, before any audio
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
        return_attention_mask: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one clip or a batch: `input_values` (B, max_length, num_mel_bins), normalised.

        raw_speech: one clip (a 1-D numpy array, list of floats or tensor) or a batch (a 2-D array
        or tensor (B, N), or a list of 1-D arrays/tensors of any lengths). Always returns a batch.
        return_tensors: "pt" (torch), "np" (numpy) or None: a list of (max_length, F) numpy arrays
        like transformers for numpy/list input, and a tensor on the input's device for tensor
        input. return_attention_mask: also return `attention_mask` (B, max_length) int32, 1 on
        the frames computed from audio, 0 on padding.
        """
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"the audio is sampled at {sampling_rate} Hz but this feature extractor expects "
                f"{self.sampling_rate} Hz: resample it first (ast_min.load_audio(path) resamples files to "
                f"{self.sampling_rate} Hz; ast_min.audio.resample does arrays)"
            )
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        clips, from_torch = _to_clips(raw_speech)
        input_values, lengths = extract_input_values(
            clips,
            num_mel_bins=self.num_mel_bins,
            max_length=self.max_length,
            do_normalize=self.do_normalize,
            mean=self.mean,
            std=self.std,
            sampling_rate=self.sampling_rate,
        )
        out = BatchFeature(input_values=input_values)
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            frames = torch.arange(self.max_length, device=lengths.device)
            out["attention_mask"] = (frames[None, :] < lengths[:, None]).to(torch.int32)  # (B, max_length)
        if return_tensors == "np" or (return_tensors is None and not from_torch):
            for key, value in out.items():
                out[key] = value.cpu().numpy()
                if return_tensors is None:  # transformers' un-tensored output: a list per clip
                    out[key] = list(out[key])
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

    def save_pretrained(self, directory: str | os.PathLike) -> str:
        """Write `directory/preprocessor_config.json` (readable by transformers' from_pretrained); returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, PREPROCESSOR_CONFIG)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides) -> "ASTFeatureExtractor":
        """Read `preprocessor_config.json` from a checkpoint directory (or the file itself); overrides win."""
        path = os.fspath(path)
        file = os.path.join(path, PREPROCESSOR_CONFIG) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"no {PREPROCESSOR_CONFIG} at {file!r}: pass a checkpoint directory that has one, "
                "or build ASTFeatureExtractor(...) with explicit arguments"
            )
        with open(file) as f:
            try:
                config = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file!r} is not valid JSON ({e}): re-save the feature extractor") from None
        if not isinstance(config, Mapping):
            raise ValueError(f"{file!r} must hold a JSON object of feature-extractor settings")
        return cls(**{**config, **overrides})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "feature_extractor_type")
        return f"ASTFeatureExtractor({inner})"


def _to_clips(raw_speech) -> tuple[list[torch.Tensor], bool]:
    """Any accepted input -> list of 1-D float32 tensors, and whether it was torch."""
    if isinstance(raw_speech, (torch.Tensor, np.ndarray)):
        if raw_speech.ndim == 0 or raw_speech.ndim > 2:
            raise ValueError(
                f"expected one mono clip (N,) or a batch (B, N), got shape {tuple(raw_speech.shape)}: "
                "downmix channels by averaging them (ast_min.load_audio does) and pass clips as a list or (B, N)"
            )
        items = [raw_speech] if raw_speech.ndim == 1 else list(raw_speech)
        from_torch = isinstance(raw_speech, torch.Tensor)
    elif isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise ValueError("raw_speech is empty: pass at least one clip")
        batched = isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple))
        items = list(raw_speech) if batched else [np.asarray(raw_speech, dtype=np.float32)]
        from_torch = all(isinstance(item, torch.Tensor) for item in items)
    else:
        raise ValueError(
            f"raw_speech must be a numpy array, a torch tensor or a list of them, got {type(raw_speech).__name__}"
        )
    return [_to_tensor(item, i) for i, item in enumerate(items)], from_torch


def _to_tensor(item, index: int) -> torch.Tensor:
    """One clip -> 1-D float tensor; int16/int32 PCM scaled to [-1, 1), other integer types refused."""
    if isinstance(item, (list, tuple)):
        item = np.asarray(item, dtype=np.float32)  # python numbers, as transformers reads them
    if isinstance(item, torch.Tensor):
        if not item.is_floating_point():
            if item.dtype not in _TORCH_PCM_SCALE:
                raise ValueError(_int_message(index, item.dtype))
            item = item.to(torch.float32) / _TORCH_PCM_SCALE[item.dtype]
    elif isinstance(item, np.ndarray):
        if item.dtype.kind in "iub":
            if item.dtype not in _PCM_SCALE:
                raise ValueError(_int_message(index, item.dtype))
            item = item.astype(np.float32) / np.float32(_PCM_SCALE[item.dtype])
        elif item.dtype.kind != "f":
            raise ValueError(f"clip {index} has dtype {item.dtype}: pass real float samples in [-1, 1)")
        item = torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32))
    else:
        raise ValueError(f"clip {index} is a {type(item).__name__}: pass numpy arrays or torch tensors")
    if item.dim() != 1:
        raise ValueError(
            f"clip {index} has shape {tuple(item.shape)}, not (N,): pass mono audio "
            "(average the channels; ast_min.load_audio downmixes files)"
        )
    return item.to(torch.float32)  # float16/bfloat16/float64 read as float32, as transformers does


def _int_message(index: int, dtype) -> str:
    return (
        f"clip {index} has integer dtype {dtype}: int16 and int32 PCM are scaled to [-1, 1) automatically; "
        "convert other integer audio to float samples in [-1, 1) yourself (e.g. (x - 128) / 128 for uint8)"
    )


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
    means, stds = [], []

    def flush(batch):
        clips, _ = _to_clips(batch)
        if max_length is None:
            for features in fbank(clips, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate):
                means.append(features.double().mean().item())
                stds.append(features.double().std().item())
        else:
            values, _ = extract_input_values(
                clips, num_mel_bins=num_mel_bins, max_length=max_length, do_normalize=False, sampling_rate=sampling_rate
            )
            values = values.flatten(1).double()  # (B, max_length * F)
            means.extend(values.mean(dim=1).tolist())
            stds.extend(values.std(dim=1).tolist())

    if isinstance(waveforms, (np.ndarray, torch.Tensor)) and waveforms.ndim == 2:
        waveforms = list(waveforms)
    if isinstance(waveforms, (str, os.PathLike, np.ndarray, torch.Tensor)):
        raise ValueError("compute_norm_stats takes a collection of clips: a (B, N) array or an iterable of clips/paths")
    if progress:
        from tqdm.auto import tqdm

        waveforms = tqdm(waveforms, desc="norm stats", unit="clip")
    batch = []
    for clip in waveforms:
        if isinstance(clip, (str, os.PathLike)):
            clip = load_audio(clip, sampling_rate)
        batch.append(clip)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not means:
        raise ValueError("compute_norm_stats got no clips: pass at least one waveform or file")
    return float(np.mean(means)), float(np.mean(stds))
