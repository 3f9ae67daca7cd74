# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · From a waveform to AST's log-mel spectrogram, by hand
#
# The Audio Spectrogram Transformer does not listen to samples: it looks at a picture of the sound,
# a 1024-frame × 128-bin log-mel spectrogram (Gong, Chung & Glass, *AST*, Interspeech 2021,
# section 2.1). The original code computes it with torchaudio's port of Kaldi's `fbank`, called with
# `window_type='hanning'`, `dither=0.0`, `use_energy=False`, `htk_compat=True`, a 10 ms shift and
# 128 mel bins. ast-min reproduces *that call*, not Kaldi's defaults (which differ: section 8 shows
# how), and not Kaldi's C++ program, which refuses 128 bins at 16 kHz (section 6 shows why). One more
# condition: the original code subtracts the whole waveform's mean before the call; ast-min, like
# transformers, does not (the per-frame DC removal of section 3 makes the two nearly equal). The
# checkpoint was trained on that exact picture, down to details that look like accidents, so every
# step matters.
#
# We build each step by hand with numpy, in float64, plot it, and end the step with an assertion
# that our hand-built result equals `ast_min`'s:
#
# 0. the whole pipeline in one picture, sound file to logits, with the shape at every step,
# 1. a waveform from an audio file (mono, 16 kHz),
# 2. 25 ms frames every 10 ms,
# 3. per-frame DC removal and pre-emphasis,
# 4. the window: Kaldi's symmetric Hann, what the paper calls Hamming, and Kaldi's defaults,
# 5. the power spectrum: a DFT by hand, then the FFT; the time/frequency trade-off,
# 6. the mel filterbank — and its empty filter,
# 7. the log,
# 8. the exact conditions: what the window and dither change, and where Kaldi's defaults differ,
# 9. padding to 1024 frames and normalisation: the model's `input_values`.
#
# Shape legend: N samples, T frames, K = 257 FFT bins, F = 128 mel bins.

# %%
import tempfile
from pathlib import Path

from IPython.display import Audio, display

import matplotlib.pyplot as plt
import numpy as np
import soundfile
import torch

import ast_min
from ast_min import features
from ast_min.extractor import fbank

SR = 16000  # AST's sampling rate

# %% [markdown]
# ## 0 · The whole pipeline, in one picture
#
# Before building it piece by piece, every step from a sound file to AST's 527 AudioSet scores, with the
# shape each step produces for a 10-second clip. The shapes are not typed in: the cell runs a 10 s
# clip through ast-min's own functions, and through an AST-Base with one layer of random weights (the
# layer count changes no shape), and reads each shape off its tensor. The arrows name the operation
# and the chapter that builds it: this one, the front end; chapter 02, patches to logits; chapter 03,
# the attention inside every block, as a GPU kernel.

# %%
from ast_min.model import patchify  # noqa: E402

flow_config = ast_min.ASTConfig(num_hidden_layers=1, num_labels=527)  # AST-Base's geometry, AudioSet's labels
clip = (0.1 * np.random.default_rng(1).standard_normal(10 * SR)).astype(np.float32)  # 10 s of noise
flow_frames = features.frame_signal(torch.from_numpy(clip))  # (T, 400)
flow_power = features.power_spectrum(features.pre_emphasis(features.remove_dc(flow_frames)) * features.hanning_window(400))
flow_log_mel = features.log_mel(flow_power, features.mel_filterbank(flow_config.num_mel_bins))  # (T, F)
flow_input = ast_min.ASTFeatureExtractor()(clip, sampling_rate=SR, return_tensors="pt").input_values  # (1, 1024, F)
flow_patches = patchify(flow_input, flow_config.patch_size, flow_config.frequency_stride, flow_config.time_stride)
flow_model = ast_min.ASTForAudioClassification(flow_config).eval()
with torch.no_grad():
    flow_out = flow_model(flow_input, output_hidden_states=True)
steps = [  # (what, shape, the operation that makes the next one, chapter)
    ("sound file", "any rate, any channels", "load_audio: mono, resample", "01"),
    ("waveform", (len(clip),), "25 ms frames every 10 ms", "01"),
    ("frames", tuple(flow_frames.shape), "DC, pre-emphasis, window, |FFT|²", "01"),
    ("power spectrum", tuple(flow_power.shape), "mel filterbank, log", "01"),
    ("log-mel", tuple(flow_log_mel.shape), "pad to 1024, normalise", "01"),
    ("input_values", tuple(flow_input.shape[1:]), "16 x 16 patches, stride 10", "02"),
    ("patches", tuple(flow_patches.shape[1:]), "linear map, [CLS] + [DIST], positions", "02"),
    ("tokens", tuple(flow_out.hidden_states[0].shape[1:]), "12 blocks: attention (03) + MLP", "02, 03"),
    ("hidden states", tuple(flow_out.hidden_states[-1].shape[1:]), "LayerNorm, mean of tokens 0 and 1, head", "02"),
    ("logits", tuple(flow_out.logits.shape[1:]), None, None),
]
T_10s = 1 + (10 * SR - 400) // 160
assert steps[2][1] == (T_10s, 400) and steps[3][1] == (T_10s, 257) and steps[4][1] == (T_10s, flow_config.num_mel_bins)
assert steps[5][1] == (flow_config.max_length, flow_config.num_mel_bins)
assert steps[6][1] == (flow_config.num_patches, flow_config.patch_size**2) and steps[7][1] == (flow_config.sequence_length, flow_config.hidden_size)
assert steps[9][1] == (527,)

fig, ax = plt.subplots(figsize=(15, 4.6))
ax.set(xlim=(0, 5), ylim=(0, 2)); ax.axis("off")
positions = [(i + 0.5, 1.5) for i in range(5)] + [(4.5 - i, 0.5) for i in range(5)]  # left to right, then back
for (name, shape, _, _), (cx, cy) in zip(steps, positions, strict=True):
    colour = "#fde2c8" if name in ("sound file", "waveform", "frames", "power spectrum", "log-mel") else "#d6e6f5"
    ax.add_patch(plt.matplotlib.patches.FancyBboxPatch((cx - 0.36, cy - 0.2), 0.72, 0.4, boxstyle="round,pad=0.02", fc=colour, ec="0.3"))
    shape_text = shape if isinstance(shape, str) else str(shape)
    ax.text(cx, cy + 0.06, name, ha="center", va="center", fontsize=10, weight="bold")
    ax.text(cx, cy - 0.09, shape_text, ha="center", va="center", fontsize=8 if isinstance(shape, str) else 9, family="monospace")
for (_, _, operation, chapter), start, end in zip(steps[:-1], positions[:-1], positions[1:], strict=True):
    ax.annotate("", xy=(end[0] - 0.37 * np.sign(end[0] - start[0]), end[1] + (0.2 if end[1] < start[1] else 0)),
                xytext=(start[0] + 0.37 * np.sign(end[0] - start[0]), start[1] - (0.2 if end[1] < start[1] else 0)),
                arrowprops=dict(arrowstyle="->", color="0.3"))
    mid_x, mid_y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    ax.text(mid_x + (0.15 if end[1] < start[1] else 0), mid_y + (0.26 if start[1] == end[1] else 0), f"{operation}\n(ch. {chapter})",
            ha="center", va="center", fontsize=7.5, color="0.25")
ax.set_title("AST's pipeline for a 10 s clip: shapes read off ast-min's tensors (orange: this chapter's front end)")
plt.show()

# %% [markdown]
# ## 1 · A waveform
#
# Any sound will do; we synthesise one so the chapter needs no download: a rising whistle, a low
# hum with harmonics, three clicks (4 ms bursts that decay in about 1 ms: short, but broadband and
# loud enough to show in every spectrogram below) and some noise, 3 seconds, written to a 44.1 kHz
# stereo WAV file as a recorder would. `ast_min.load_audio` reads it back as AST wants it: one channel (the average
# of the two) at 16 kHz, float32 in [-1, 1).

# %%
rng = np.random.default_rng(0)
file_rate, seconds = 44100, 3.0
t = np.arange(int(file_rate * seconds)) / file_rate
whistle = 0.3 * np.sin(2 * np.pi * (300 * t + 600 * t**2))  # 300 Hz rising to 3.9 kHz
hum = sum(0.15 / h * np.sin(2 * np.pi * 110 * h * t) for h in range(1, 6))
click_times = np.array([0.5, 1.2, 2.2])  # seconds
burst = np.arange(int(0.004 * file_rate)) / file_rate  # 4 ms
clicks = np.zeros_like(t)
for c in click_times:  # random signs under a 1 ms exponential decay: a broadband snap
    start_ = int(c * file_rate)
    clicks[start_ : start_ + len(burst)] = 0.9 * np.exp(-burst / 0.001) * np.sign(rng.standard_normal(len(burst)))
noise_std = 0.005
noise = noise_std * rng.standard_normal(t.shape)
left, right = whistle + hum + clicks + noise, whistle + 0.5 * hum + noise
path = Path(tempfile.mkdtemp()) / "sound.wav"
soundfile.write(path, np.stack([left, right], axis=1), file_rate, subtype="FLOAT")

waveform = ast_min.load_audio(path)  # (N,) float32, 16 kHz, mono
x = waveform.astype(np.float64)
print(waveform.shape, waveform.dtype, f"{len(waveform) / SR:.2f} s")

fig, ax = plt.subplots(figsize=(10, 2.5))
ax.plot(np.arange(len(x)) / SR, x, lw=0.4)
ax.set(xlabel="seconds", ylabel="amplitude", title="the waveform AST hears: mono, 16 kHz")
plt.show()
display(Audio(waveform, rate=SR))  # listen: the whistle, the hum, three clicks

# %% [markdown]
# Check: the file had 44,100 samples per second and two channels; `load_audio` averaged the
# channels and resampled with an anti-aliasing filter (soxr). By hand, the channel mean of the
# whistle and hum (the noise is random) is a known function of time, so we compare with it at
# 16 kHz, away from the edges where any filter rings.

# %%
t16 = np.arange(len(x)) / SR
clean = 0.3 * np.sin(2 * np.pi * (300 * t16 + 600 * t16**2)) + 0.75 * sum(
    0.15 / h * np.sin(2 * np.pi * 110 * h * t16) for h in range(1, 6)
)
quiet = np.all([np.abs(t16 - (c + 0.002)) > 0.01 for c in click_times], axis=0)  # skip the clicks
middle = quiet & (t16 > 0.05) & (t16 < seconds - 0.05)
assert len(waveform) == int(seconds * SR)
residual = np.sqrt(np.mean((x[middle] - clean[middle]) ** 2))
print(f"rms of what is neither whistle nor hum: {residual:.4f} (the noise's std: {noise_std})")
assert residual < 2 * noise_std  # only the noise remains, and the resampler's rounding

# %% [markdown]
# ## 2 · Frames: 25 ms every 10 ms
#
# Sound changes; a spectrum is only meaningful over a short stretch. Kaldi cuts 400-sample (25 ms)
# frames every 160 samples (10 ms), so consecutive frames overlap by 60%. With `snip_edges=True`
# a frame must fit entirely inside the signal: T = 1 + (N − 400) // 160. Ten seconds make 998
# frames, which is why AST pads to 1024.

# %%
N = len(x)
T = 1 + (N - 400) // 160
frames_hand = np.stack([x[i * 160 : i * 160 + 400] for i in range(T)])  # (T, 400)

frames = features.frame_signal(torch.from_numpy(x))  # (T, 400), a strided view
print(f"N = {N} samples -> T = {T} frames of 400")
assert frames.shape == (T, 400) and np.array_equal(frames.numpy(), frames_hand)

fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
start = int(1.0 * SR)
axes[0].plot(np.arange(start, start + 1200) / SR, x[start : start + 1200], lw=0.6, color="k")
for k, i in enumerate(range(start // 160, start // 160 + 4)):  # each frame as a bar under the signal
    axes[0].hlines(-0.6 - 0.08 * k, i * 160 / SR, (i * 160 + 400) / SR, color=f"C{k}", lw=5, label=f"frame {i}")
axes[0].set(xlabel="seconds", title="four consecutive frames: 400 samples, 160 apart")
axes[0].legend(fontsize=7, loc="upper right")
image = axes[1].imshow(frames_hand.T, aspect="auto", origin="lower", cmap="RdBu", vmin=-0.5, vmax=0.5)
fig.colorbar(image, ax=axes[1], label="amplitude")
axes[1].set(xlabel="frame t", ylabel="sample in frame", title="all frames, side by side (T, 400)")
plt.show()

# %% [markdown]
# ## 3 · DC removal and pre-emphasis
#
# Each frame's mean (its DC offset) is subtracted, so a constant offset in the recording cannot
# leak into the low bins. Then pre-emphasis y[n] = x[n] − 0.97·x[n−1], a first-difference filter
# that lifts high frequencies (speech and most sounds have far more energy low than high).
# Kaldi filters each frame on its own, so the first sample has no predecessor: it uses itself,
# y[0] = x[0] − 0.97·x[0].

# %%
centred_hand = frames_hand - frames_hand.mean(axis=1, keepdims=True)
previous = np.concatenate([centred_hand[:, :1], centred_hand[:, :-1]], axis=1)  # x[n-1], x[0] for n = 0
emphasised_hand = centred_hand - 0.97 * previous

emphasised = features.pre_emphasis(features.remove_dc(frames))
assert np.allclose(emphasised.numpy(), emphasised_hand, rtol=0, atol=1e-12)

f = np.linspace(0, SR / 2, 512)
gain = np.abs(1 - 0.97 * np.exp(-2j * np.pi * f / SR))  # the filter's frequency response
i = int(1.05 * SR) // 160
fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
axes[0].plot(frames_hand[i], lw=0.8, label="frame")
axes[0].plot(emphasised_hand[i], lw=0.8, label="DC removed, pre-emphasised")
axes[0].set(xlabel="sample in frame", title=f"frame {i}")
axes[0].legend(fontsize=8)
axes[1].plot(f, 20 * np.log10(gain))
axes[1].set(xlabel="Hz", ylabel="dB", title="pre-emphasis: -30 dB at DC, +6 dB at 8 kHz")
plt.show()

# %% [markdown]
# Listen to what pre-emphasis does, applied to the whole clip at once (Kaldi applies it frame by
# frame, which differs only at each frame's first sample): the hum almost disappears, the clicks
# and the top of the whistle stand out. (The player rescales both clips to the same peak.)

# %%
emphasised_clip = np.concatenate([[x[0] * (1 - 0.97)], x[1:] - 0.97 * x[:-1]])
display(Audio(emphasised_clip, rate=SR))
# Per frame, without DC removal, Kaldi's pre-emphasis equals the whole-clip filter after each frame's first sample.
per_frame = features.pre_emphasis(frames)
assert np.allclose(per_frame[i, 1:].numpy(), emphasised_clip[i * 160 + 1 : i * 160 + 400], atol=1e-12)

# %% [markdown]
# ## 4 · The window
#
# Cutting a frame out of a signal is multiplying by a rectangle, whose spectrum has strong side
# lobes that smear every tone across many bins. A smooth window tapering to zero at both ends
# suppresses them. Kaldi's "hanning" window is the *symmetric* Hann window, w[n] = 0.5 − 0.5·cos(2πn / 399):
# it divides by 399 = L − 1. `torch.hann_window`'s default is the *periodic* one, which divides by
# 400 — a small difference that a checkpoint notices.

# %%
n = np.arange(400)
window_hand = 0.5 - 0.5 * np.cos(2 * np.pi * n / 399)
window = features.hanning_window(400)
assert np.allclose(window.numpy(), window_hand, rtol=0, atol=1e-15)
assert window_hand[0] == 0 == window.numpy()[0]  # both ends exactly zero
windowed_hand = emphasised_hand * window_hand  # (T, 400)

fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
axes[0].plot(window_hand, label="Kaldi 'hanning' (symmetric)")
axes[0].plot(torch.hann_window(400).numpy(), "--", label="torch.hann_window (periodic)")
axes[0].set(xlabel="n", title="the window")
axes[0].legend(fontsize=8)
axes[1].plot(emphasised_hand[i], lw=0.6, color="0.6", label="before")
axes[1].plot(windowed_hand[i], lw=0.8, label="windowed")
axes[1].set(xlabel="sample in frame", title=f"frame {i}, windowed")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# **Which window?** Three candidates matter for AST:
#
# - **Hann** (Kaldi's `hanning`), above: what the original code passes (`window_type='hanning'`), and
#   what `transformers` uses. ast-min follows the code, because the checkpoints were trained on it.
# - **Hamming**, `0.54 − 0.46·cos(2πn / 399)`: what the paper's text says ("a 25 ms Hamming window").
#   It does not reach zero at the ends (0.08), which lowers the nearest side lobe but lets the far
#   ones decay slowly.
# - **Povey**, Hann to the power 0.85: Kaldi's *default* `window_type`, which AST overrides.
#
# Their spectra (zero-padded, in dB relative to each window's peak) show the trade: the main lobe's
# width (how much one tone spreads into its neighbours) against the side lobes (how far a loud tone
# leaks). Section 8 measures what each does to AST's features.

# %%
hamming_hand = 0.54 - 0.46 * np.cos(2 * np.pi * n / 399)
povey_hand = window_hand**0.85
assert np.allclose(hamming_hand, np.hamming(400)) and np.allclose(window_hand, np.hanning(400))  # numpy's symmetric windows

fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
lobe_hz = np.fft.rfftfreq(8192, 1 / SR)
for w, name in [(window_hand, "Hann (AST's code)"), (hamming_hand, "Hamming (AST's paper)"), (povey_hand, "povey (Kaldi's default)")]:
    axes[0].plot(w, label=name)
    response = np.abs(np.fft.rfft(w, 8192))
    axes[1].plot(lobe_hz, 20 * np.log10(response / response.max() + 1e-12), lw=0.8, label=name)
axes[0].set(xlabel="n", title="three windows of 400 samples")
axes[0].legend(fontsize=8)
axes[1].set(xlim=(0, 1000), ylim=(-100, 3), xlabel="Hz from the tone", ylabel="dB", title="their spectra: main lobe and side lobes")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5 · The power spectrum
#
# Each windowed frame is zero-padded to 512 samples (the next power of two: a faster FFT and
# a finer grid of frequencies) and Fourier-transformed. A real signal's spectrum is symmetric, so
# only the 257 bins from 0 Hz to 8 kHz are kept, every 16000 / 512 = 31.25 Hz apart. Their power
# |X_k|² is the energy near each frequency.

#
# **The DFT by hand.** The k-th bin is the correlation of the frame with a cosine and a sine that
# complete k cycles in 512 samples: $X_k = \sum_n x_n \cos(2\pi kn/512) - i \sum_n x_n \sin(2\pi kn/512)$.
# Stacking those cosines and sines gives two (257 × 512) matrices, and the whole spectrogram is two
# matrix products:

# %%
n_fft = 512
k_bins = np.arange(n_fft // 2 + 1)[:, None]  # (K, 1)
angles = 2 * np.pi * k_bins * np.arange(n_fft)[None, :] / n_fft  # (K, 512)
cos_matrix, sin_matrix = np.cos(angles), np.sin(angles)
padded_frames = np.zeros((T, n_fft))
padded_frames[:, :400] = windowed_hand  # zero-padded to 512
real_part, imag_part = padded_frames @ cos_matrix.T, -padded_frames @ sin_matrix.T  # (T, K) each
by_fft = torch.fft.rfft(torch.from_numpy(padded_frames))  # (T, K) complex128
scale = np.abs(padded_frames).sum(axis=1, keepdims=True)  # |X_k| <= sum |x_n|: the natural error scale
assert np.all(np.abs(real_part - by_fft.real.numpy()) <= 1e-12 * scale)
assert np.all(np.abs(imag_part - by_fft.imag.numpy()) <= 1e-12 * scale)
print(f"DFT as a matrix: {2 * (n_fft // 2 + 1) * n_fft:,} multiplications per frame; "
      f"the FFT needs about {int(n_fft * np.log2(n_fft) * 2):,} — the same numbers")

# %%
spectrum_hand = np.fft.rfft(windowed_hand, n=512)  # (T, 257) complex: the FFT from here on
power_hand = spectrum_hand.real**2 + spectrum_hand.imag**2  # (T, K)
assert np.allclose(power_hand, real_part**2 + imag_part**2, rtol=1e-9, atol=1e-12 * power_hand.max())

power = features.power_spectrum(torch.from_numpy(windowed_hand))
assert power.shape == (T, 257)
assert np.allclose(power.numpy(), power_hand, rtol=1e-10, atol=1e-12 * power_hand.max())

bins_hz = np.arange(257) * SR / 512


def harmonic_dips(power_row, n_fft, f0=110.0, count=5):
    """dB between each pair of neighbouring harmonics of f0 and the lowest bin between them (0: no dip)."""
    hz = np.arange(len(power_row)) * SR / n_fft
    dips = []
    for h in range(1, count):
        a, b = np.argmin(np.abs(hz - h * f0)), np.argmin(np.abs(hz - (h + 1) * f0))  # bins nearest the two harmonics
        floor = power_row[a : b + 1].min()
        dips.append(10 * np.log10(min(power_row[a], power_row[b]) / floor))
    return np.array(dips)


centre = (i * 160 + 200) / SR  # the frame's middle, in seconds
whistle_hz = 300 + 1200 * centre  # d/dt of the phase (300 t + 600 t²)
above_hum = bins_hz > 700
whistle_peak = bins_hz[above_hum][np.argmax(power_hand[i, above_hum])]
dips_25ms = harmonic_dips(power_hand[i], 512)
print(f"frame {i} ({centre:.3f} s): whistle expected at {whistle_hz:.0f} Hz, strongest bin above 700 Hz at {whistle_peak:.0f} Hz; "
      f"between the hum's harmonics the spectrum dips by only {dips_25ms.min():.1f} to {dips_25ms.max():.1f} dB")
assert abs(whistle_peak - whistle_hz) <= 2 * SR / 512  # within two bins

fig, axes = plt.subplots(1, 2, figsize=(12, 3))
axes[0].plot(bins_hz, 10 * np.log10(power_hand[i] + 1e-12))
for h in range(1, 6):
    axes[0].axvline(110 * h, color="0.6", ls=":", lw=0.8)
axes[0].axvline(whistle_hz, color="C3", ls="--", lw=0.8, label=f"the whistle's frequency now, {whistle_hz:.0f} Hz")
axes[0].set(xlabel="Hz", ylabel="dB", xlim=(0, 4000),
            title=f"frame {i}: the whistle; the hum's harmonics (dotted) barely apart")
axes[0].legend(fontsize=8)
image = axes[1].imshow(10 * np.log10(power_hand.T + 1e-12), aspect="auto", origin="lower", cmap="magma",
                       extent=[0, N / SR, 0, SR / 2])
fig.colorbar(image, ax=axes[1], label="power, dB")
axes[1].set(xlabel="seconds", ylabel="Hz", title="power spectrogram (T, 257)")
plt.show()

# %% [markdown]
# The whistle stands out as one peak where its frequency is at that moment. The hum does not show as
# five clean peaks: its harmonics are 110 Hz apart, and a tone seen through a 25 ms Hann window spreads
# over a main lobe 4 bins of 16000 / 400 = 40 Hz wide, 160 Hz in all, so neighbouring harmonics'
# lobes overlap and the spectrum dips only a few dB between them (printed above): barely resolved.
#
# **The time/frequency trade-off.** A frame of L samples lasts L / 16000 s, and its spectrum cannot
# cleanly separate tones closer than about a main lobe, 4 · 16000 / L Hz. Longer frames resolve the
# hum's harmonics but smear each click over their whole length; shorter frames pin the clicks down and
# blur the harmonics together (an 8 ms frame is shorter than the hum's 9 ms period, so its energy even
# pulses with the hum's phase). AST's 25 ms is the speech-processing compromise. Below, one second of a
# 110 Hz hum with its harmonics and four sharp clicks, with three frame lengths (Hann window, the same
# 10 ms shift), and the dips between harmonics each one leaves.

# %%
def power_spectrogram(signal, length, shift=160):
    """(T, K) power of Hann-windowed, DC-removed frames of `length` samples (no pre-emphasis)."""
    count = 1 + (len(signal) - length) // shift
    frames_ = np.stack([signal[j * shift : j * shift + length] for j in range(count)])
    frames_ = frames_ - frames_.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames_ * np.hanning(length), n=int(2 ** np.ceil(np.log2(length))))
    return np.abs(spectrum) ** 2


t1 = np.arange(SR) / SR
hum_and_clicks = sum(0.1 / h * np.sin(2 * np.pi * 110 * h * t1) for h in range(1, 8))
hum_and_clicks[(np.array([0.2, 0.4, 0.6, 0.8]) * SR + 80).astype(int)] += 30.0  # one loud sample each
fig, axes = plt.subplots(1, 3, figsize=(15, 3.2), sharey=True)
dips_by_length = {}
for ax, length in zip(axes, (128, 400, 1600), strict=True):
    spec_ = power_spectrogram(hum_and_clicks, length)
    n_fft = int(2 ** np.ceil(np.log2(length)))
    dips_by_length[length] = harmonic_dips(spec_[int(0.3 * SR) // 160], n_fft)  # a frame clear of the clicks
    image = ax.imshow(10 * np.log10(spec_.T + 1e-12), aspect="auto", origin="lower", cmap="magma", vmin=-30,
                      extent=[length / 2 / SR, (length / 2 + 160 * len(spec_)) / SR, 0, SR / 2])
    ax.set(xlim=(0, 1), ylim=(0, 1000), xlabel="seconds",
           title=f"L = {length}: {1000 * length / SR:g} ms, main lobe {4 * SR / length:.0f} Hz")
axes[0].set_ylabel("Hz")
fig.colorbar(image, ax=axes, label="power, dB", pad=0.01)
plt.show()
for length, dips in dips_by_length.items():
    print(f"L = {length:4d}: dips between neighbouring harmonics {np.round(dips, 1)} dB")
assert np.all(dips_by_length[128] < 1)  # a 500 Hz main lobe: the harmonics merge
assert np.all(dips_by_length[400] < dips_by_length[1600]) and np.all(dips_by_length[1600] > 20)  # 160 Hz lobes overlap; 40 Hz ones do not
# The 25-ms version is the spectrogram above, less pre-emphasis: the same framing and window.
unemphasised = np.fft.rfft((frames_hand - frames_hand.mean(axis=1, keepdims=True)) * window_hand, n=512)
assert np.allclose(power_spectrogram(x, 400), np.abs(unemphasised) ** 2)

# %% [markdown]
# ## 6 · The mel filterbank, and its empty filter
#
# Hearing resolves low frequencies finely and high ones coarsely. The mel scale
# m(f) = 1127·ln(1 + f / 700) is roughly linear below 1 kHz and logarithmic above. Kaldi places
# F + 2 points equally spaced in mel between 20 Hz and 8 kHz; filter j is a triangle *in mel*
# rising from point j to point j+1 and falling to point j+2. Each mel bin is the weighted sum of
# the FFT bins under its triangle: a (257 × 128) matrix.

# %%
F = 128
mel = lambda hz: 1127 * np.log(1 + hz / 700)  # noqa: E731
points = np.linspace(mel(20), mel(SR / 2), F + 2)  # F + 2 edges, equally spaced in mel
bin_mels = mel(bins_hz)[:, None]  # (K, 1)
rising = (bin_mels - points[None, :-2]) / (points[1:-1] - points[:-2])  # (K, F)
falling = (points[None, 2:] - bin_mels) / (points[2:] - points[1:-1])
filterbank_hand = np.maximum(0, np.minimum(rising, falling))  # (K, F)

filterbank = features.mel_filterbank(F)
assert np.allclose(filterbank.numpy(), filterbank_hand, rtol=0, atol=1e-12)

empty = np.flatnonzero(filterbank_hand.max(axis=0) == 0)
print("filters that catch no FFT bin:", empty)
assert empty.tolist() == [3]

# %% [markdown]
# **Filter 3 is empty.** At 128 bins the lowest triangles are narrower than the 31.25 Hz spacing of
# the FFT bins, and no bin centre falls strictly inside the fourth one. Kaldi's own C++ refuses
# such a filterbank ("You may have set num_mel_bins too large"); torchaudio and transformers
# compute it anyway, the empty bin's energy is 0, and after the log floor its value is
# log(1.19e-7) = −15.94 in every frame of every clip. The AudioSet checkpoint was trained with this
# constant row, so `ast_min` keeps it.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
hz_fine = np.linspace(0, SR / 2, 4000)
for j in range(F):
    lo, top, hi = (700 * np.expm1(points[j : j + 3] / 1127))
    axes[0].plot([lo, top, hi], [0, 1, 0], lw=0.5, color="C0")
axes[0].set(xlabel="Hz", title="128 triangles, equally spaced in mel")
colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C9"]  # C3 (red): filter 3
for j in range(8):
    lo, top, hi = (700 * np.expm1(points[j : j + 3] / 1127))
    axes[1].plot([lo, top, hi], [0, 1, 0], color=colors[j], lw=2.5 if j == 3 else 1)
    caught = filterbank_hand[:6, j] > 0  # the FFT bins this filter weighs
    axes[1].plot(bins_hz[:6][caught], filterbank_hand[:6, j][caught], "o", color=colors[j])
for hz in bins_hz[:6]:
    axes[1].axvline(hz, color="0.8", lw=0.8, zorder=0)
lo, top, hi = 700 * np.expm1(points[3:6] / 1127)
axes[1].annotate("filter 3 lies between two FFT bins:\nno bin centre inside, no dot, weight 0", xy=(top, 1),
                 xytext=(80, 1.25), ha="center", arrowprops=dict(arrowstyle="->", color="C3"), color="C3", fontsize=9)
axes[1].set_ylim(0, 1.5)
axes[1].set(xlim=(0, 160), xlabel="Hz", title="the first 8 filters; grey: FFT bin centres; dots: weights")
plt.show()

# %% [markdown]
# ## 7 · The log
#
# Loudness is perceived logarithmically, and the log turns the huge dynamic range of energies into
# numbers a network handles. The floor max(E, ε), ε = float32's machine epsilon 1.19e-7, keeps
# silence and the empty filter finite.

# %%
eps = float(np.finfo(np.float32).eps)  # 1.1920929e-07, as a float64
log_mel_hand = np.log(np.maximum(power_hand @ filterbank_hand, eps))  # (T, F)

log_mel = features.log_mel(power, filterbank)
assert np.allclose(log_mel.numpy(), log_mel_hand, rtol=0, atol=1e-9)
assert np.all(log_mel_hand[:, 3] == np.log(eps))  # the empty filter, at the floor
# The step-by-step composition and the fast batched path give the same picture.
assert np.allclose(features.log_mel_spectrogram(torch.from_numpy(x)).numpy(), log_mel_hand, atol=1e-9)
fast = fbank([torch.from_numpy(x)], dtype=torch.float64)[0]
assert np.allclose(fast.numpy(), log_mel_hand, atol=1e-9)

fig, ax = plt.subplots(figsize=(10, 3))
image = ax.imshow(log_mel_hand.T, aspect="auto", origin="lower", cmap="magma", extent=[0, N / SR, -0.5, F - 0.5])
ax.axhline(3, color="cyan", lw=0.5, ls=":")
ax.plot(click_times + 0.002, [F + 1] * len(click_times), "v", color="cyan", ms=7, clip_on=False)
ax.set(xlabel="seconds", ylabel="mel bin", title="log-mel spectrogram (T, 128); dotted: the empty bin 3; ▼: the clicks")
fig.colorbar(image, ax=ax, label="log energy")
plt.show()
# Each click lifts its frames' mean log energy well above the frames around it (their median).
frame_mean = log_mel_hand[:, np.arange(F) != 3].mean(axis=1)  # (T,), the empty bin left out
rises = [frame_mean[k - 2 : k + 3].max() - np.median(frame_mean[k - 20 : k + 20]) for k in (click_times * SR / 160).astype(int)]
print("each click's rise over its neighbourhood, mean log energy per frame:", np.round(rises, 2), "nats")
assert min(rises) > 2  # e² ≈ 7 times the energy of the frames around it, over the whole band

# %% [markdown]
# ## 8 · The exact conditions: window, dither and Kaldi's defaults
#
# "Kaldi's fbank" names a family of pictures, chosen by options. Kaldi's own defaults are
# `window_type='povey'` and `dither=1.0` (Gaussian noise of standard deviation 1 added to every
# sample, in 16-bit integer units, i.e. 2⁻¹⁵ of full scale); torchaudio's port keeps the povey window
# but defaults to no dither. The original AST code passes `window_type='hanning'` and `dither=0.0`.
# ast-min's features equal Kaldi's fbank *under those options* — Hann window, no dither, no energy
# term — and, at 128 bins, equal what torchaudio and transformers compute where Kaldi's C++ refuses.
# How much does each option move the features? The same pipeline, with one step swapped:

# %%
def log_mel_with(signal, window, dither_std=0.0, seed=0):
    """Log-mel (T, F) of `signal` through ast-min's steps, with another window and optional dither."""
    if dither_std:
        signal = signal + dither_std * np.random.default_rng(seed).standard_normal(signal.shape)
    frames_ = features.pre_emphasis(features.remove_dc(features.frame_signal(torch.from_numpy(signal))))
    return features.log_mel(features.power_spectrum(frames_ * torch.from_numpy(window)), filterbank).numpy()


hann_features = log_mel_with(x, window_hand)
assert np.allclose(hann_features, log_mel_hand, atol=1e-9)  # the Hann version is the picture built above
audible = np.arange(F) != 3  # leave out the empty filter, constant in every variant
for name, window_ in [("Hamming (the paper's text)", hamming_hand), ("povey (Kaldi's default)", povey_hand)]:
    delta = log_mel_with(x, window_) - hann_features
    print(f"{name:>27} vs Hann: mean |Δ log-mel| {np.abs(delta[:, audible]).mean():.3f}, max {np.abs(delta[:, audible]).max():.2f}; "
          f"in input_values units (÷ 2·std) mean {np.abs(delta[:, audible]).mean() / (2 * features.AUDIOSET_STD):.3f}")

hamming_delta = log_mel_with(x, hamming_hand) - hann_features
fig, axes = plt.subplots(1, 2, figsize=(13, 3))
image = axes[0].imshow(hamming_delta.T, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-2, vmax=2, extent=[0, N / SR, -0.5, F - 0.5])
fig.colorbar(image, ax=axes[0], label="Δ log energy")
axes[0].set(xlabel="seconds", ylabel="mel bin", title="Hamming minus Hann (the paper's text vs the code)")
axes[1].plot(hann_features[i], lw=0.8, label="Hann")
axes[1].plot(log_mel_with(x, hamming_hand)[i], lw=0.8, label="Hamming")
axes[1].set(xlabel="mel bin", ylabel="log energy", title=f"frame {i}")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The Hamming window's non-zero ends leak each loud component further across the spectrum, so bins
# far from the loud components (the noise above the whistle) come out higher (red); right beside the
# whistle its slightly narrower main lobe gives less (blue); where the signal is strong the two
# nearly agree. A model trained on one picture sees a systematically different one through the other
# window: the paper's word "Hamming" does not describe the checkpoints, the code does.
#
# **Dither** hides the log floor: with dither, a digitally silent stretch has a small random energy
# in every bin instead of exactly 0, so its log is a noise level rather than log ε. It also makes the
# features random — two runs differ — which is why AST turns it off. Kaldi's default dither, on a
# second of digital silence and on our clip:

# %%
lsb = 2.0**-15  # Kaldi's dither=1.0 on 16-bit audio, in the [-1, 1) units used here
silence = np.zeros(SR)
print(f"silence, no dither: every bin at {log_mel_with(silence, window_hand)[:, audible].max():.2f} (= log ε = {np.log(eps):.2f}); "
      f"with 1-LSB dither: mean {log_mel_with(silence, window_hand, lsb)[:, audible].mean():.2f}")
dither_delta = log_mel_with(x, window_hand, lsb) - hann_features
print(f"our clip: max |Δ log-mel| {np.abs(dither_delta[:, audible]).max():.1e}")
assert not np.allclose(log_mel_with(x, window_hand, lsb, seed=1), log_mel_with(x, window_hand, lsb, seed=2))  # random
assert np.all(log_mel_with(silence, window_hand) == np.log(eps))

# %% [markdown]
# The same statement against Kaldi's arithmetic itself, when `kaldi-native-fbank` (a C++ port of
# Kaldi's feature code, used by ast-min's tests) is installed. It refuses 128 bins at 16 kHz, as
# Kaldi does, so compare at 126: with the Hann window and no dither, it agrees with ast-min to float32
# rounding; with its default window (povey) it does not.

# %%
try:
    import kaldi_native_fbank as knf
except ImportError:
    knf = None
if knf is None:
    print("kaldi-native-fbank is not installed: skipped (pip install kaldi-native-fbank)")
else:
    def kaldi(window_type):
        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.frame_opts.window_type = window_type
        opts.mel_opts.num_bins = 126
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(SR, waveform)
        fb.input_finished()
        return np.exp(np.stack([fb.get_frame(j) for j in range(fb.num_frames_ready)]).astype(np.float64))  # energies

    ours_126 = np.exp(fbank([torch.from_numpy(x)], num_mel_bins=126, dtype=torch.float64)[0].numpy())
    for window_type in ("hanning", "povey"):
        theirs_126 = kaldi(window_type)
        # Kaldi computes in float32: a bin's error is a few float32 ulps of itself plus FFT rounding of
        # the order of 2^-24 x the frame's strongest energy; 1e-4 of each leaves a wide margin.
        bound = 1e-4 * theirs_126 + 1e-4 * theirs_126.max(axis=1, keepdims=True) + 2 * eps
        outside = np.mean(np.abs(ours_126 - theirs_126) > bound)
        print(f"kaldi-native-fbank, window {window_type!r}: {outside:.1%} of the (frame, bin) energies differ beyond float32 rounding")
        assert outside == 0 if window_type == "hanning" else outside > 0  # povey: a different picture

# %% [markdown]
# ## 9 · Pad to 1024 frames and normalise: `input_values`
#
# AST's position embeddings cover exactly 1024 frames (10.24 s), so shorter clips are padded with
# zero rows — *before* normalisation, as transformers does — and longer ones are cut. Then
# (x − mean) / (2·std) with AudioSet's statistics mean −4.27, std 4.57: AudioSet's features end up
# with mean about 0 and standard deviation about 0.5 (our synthetic clip is no AudioSet clip: its
# own values are printed below). Padding rows become (0 − mean) / (2·std) = +0.47.

# %%
mean, std = features.AUDIOSET_MEAN, features.AUDIOSET_STD  # AudioSet's statistics
padded_hand = np.zeros((1024, F))
padded_hand[: min(T, 1024)] = log_mel_hand[:1024]
input_values_hand = (padded_hand - mean) / (2 * std)

extractor = ast_min.ASTFeatureExtractor()  # defaults: 128 bins, 1024 frames, AudioSet mean/std
input_values = extractor(waveform, sampling_rate=SR, return_tensors="pt").input_values  # (1, 1024, 128) float32
assert input_values.shape == (1, 1024, 128)
# float32 against our float64: the strong bins agree to ~1e-6; the weakest, ~1e9 below the frame's
# strongest, carry float32 FFT rounding (any float32 implementation does), so compare the energies.
energy = lambda v: np.exp(v * 2 * std + mean)  # noqa: E731  back to mel energies
ours, hand = energy(input_values[0].double().numpy()), energy(input_values_hand)
assert np.all(np.abs(ours - hand) <= 1e-4 * hand + 1e-4 * hand.max(axis=1, keepdims=True) + 2 * eps)
assert np.allclose(input_values[0, T:].numpy(), -mean / (2 * std))  # the padding rows

fig, ax = plt.subplots(figsize=(10, 3))
image = ax.imshow(input_values_hand.T, aspect="auto", origin="lower", cmap="magma")
ax.axvline(T, color="cyan", lw=0.8, ls="--")
ax.text(T + 10, 100, f"padding\n({-mean / (2 * std):+.2f})", color="cyan", fontsize=9)
ax.set(xlabel="frame", ylabel="mel bin", title="input_values: what the model sees (1024 × 128)")
fig.colorbar(image, ax=ax, label="(log-mel − mean) / (2 · std)")
plt.show()
print(f"mean {input_values_hand[:T].mean():.2f}, std {input_values_hand[:T].std():.2f} over the audio frames")

# %% [markdown]
# ## The same picture as transformers'
#
# `ast_min.ASTFeatureExtractor` takes the arguments of `transformers.ASTFeatureExtractor`, so code
# ports by changing one import. A last check that the two agree on this clip:

# %%
import warnings

from transformers import ASTFeatureExtractor as HFExtractor

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # transformers warns about the empty filter
    theirs = HFExtractor()(waveform, sampling_rate=SR, return_tensors="np")["input_values"][0]
assert np.all(np.abs(energy(theirs.astype(np.float64)) - hand) <= 1e-4 * hand + 1e-4 * hand.max(axis=1, keepdims=True) + 2 * eps)
print("ast-min and transformers agree; max |difference| in input_values:",
      float(np.abs(theirs - input_values[0].numpy()).max()))

# %% [markdown]
# Next, chapter 02 cuts this image into 16 × 16 patches and follows them through the transformer.
#
# To compute features outside a notebook: `ast-min features FILE... --out features.npy`; for a
# dataset's own normalisation statistics: `ast_min.compute_norm_stats(files)`.
#
# ## Now you try
#
# - `ast-min assignment start framing`: cut a waveform into Kaldi's frames (snip_edges, DC removal,
#   pre-emphasis with its first-sample rule), then `ast-min assignment check framing`.
# - `ast-min assignment start mel`: build the mel filterbank and the log-mel, empty filter included,
#   then `ast-min assignment check mel`.
# - On your own: redo section 8 with a clip of your own recording. Which bins does the Hamming window
#   move most, and why? What does 1-LSB dither do to a clip that was recorded with digital silence?
