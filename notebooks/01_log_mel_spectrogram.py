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
# a 1024-frame × 128-bin log-mel spectrogram computed exactly as Kaldi's `fbank` computes it
# (Gong, Chung & Glass, *AST*, Interspeech 2021, section 2.1). The checkpoint was trained on that
# exact picture, down to details that look like accidents, so every step matters.
#
# We build each step by hand with numpy, in float64, plot it, and end the step with an assertion
# that our hand-built result equals `ast_min`'s:
#
# 1. a waveform from an audio file (mono, 16 kHz),
# 2. 25 ms frames every 10 ms,
# 3. per-frame DC removal and pre-emphasis,
# 4. Kaldi's symmetric Hann window,
# 5. the power spectrum of a 512-point FFT,
# 6. the mel filterbank — and its empty filter,
# 7. the log,
# 8. padding to 1024 frames and normalisation: the model's `input_values`.
#
# Shape legend: N samples, T frames, K = 257 FFT bins, F = 128 mel bins.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import soundfile
import torch

import ast_min
from ast_min import features

SR = 16000  # AST's sampling rate

# %% [markdown]
# ## 1 · A waveform
#
# Any sound will do; we synthesise one so the chapter needs no download: a rising whistle, a low
# hum with harmonics, a few clicks and some noise, 3 seconds, written to a 44.1 kHz stereo WAV file
# as a recorder would. `ast_min.load_audio` reads it back as AST wants it: one channel (the average
# of the two) at 16 kHz, float32 in [-1, 1).

# %%
rng = np.random.default_rng(0)
file_rate, seconds = 44100, 3.0
t = np.arange(int(file_rate * seconds)) / file_rate
whistle = 0.3 * np.sin(2 * np.pi * (300 * t + 600 * t**2))  # 300 Hz rising to 3.9 kHz
hum = sum(0.15 / h * np.sin(2 * np.pi * 110 * h * t) for h in range(1, 6))
clicks = np.zeros_like(t)
clicks[(np.array([0.5, 1.2, 2.2]) * file_rate).astype(int)] = 0.9
noise = 0.02 * rng.standard_normal(t.shape)
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
quiet = (np.abs(t16 - 0.5) > 0.01) & (np.abs(t16 - 1.2) > 0.01) & (np.abs(t16 - 2.2) > 0.01)  # skip the clicks
middle = quiet & (t16 > 0.05) & (t16 < seconds - 0.05)
assert len(waveform) == int(seconds * SR)
assert np.sqrt(np.mean((x[middle] - clean[middle]) ** 2)) < 0.03  # only the noise (std 0.02) remains

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
axes[1].imshow(frames_hand.T, aspect="auto", origin="lower", cmap="RdBu", vmin=-0.5, vmax=0.5)
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
# ## 5 · The power spectrum
#
# Each windowed frame is zero-padded to 512 samples (the next power of two: a faster FFT and
# a finer grid of frequencies) and Fourier-transformed. A real signal's spectrum is symmetric, so
# only the 257 bins from 0 Hz to 8 kHz are kept, every 16000 / 512 = 31.25 Hz apart. Their power
# |X_k|² is the energy near each frequency.

# %%
spectrum_hand = np.fft.rfft(windowed_hand, n=512)  # (T, 257) complex
power_hand = spectrum_hand.real**2 + spectrum_hand.imag**2  # (T, K)

power = features.power_spectrum(torch.from_numpy(windowed_hand))
assert power.shape == (T, 257)
assert np.allclose(power.numpy(), power_hand, rtol=1e-10, atol=1e-12 * power_hand.max())

bins_hz = np.arange(257) * SR / 512
fig, axes = plt.subplots(1, 2, figsize=(12, 3))
axes[0].plot(bins_hz, 10 * np.log10(power_hand[i] + 1e-12))
axes[0].set(xlabel="Hz", ylabel="dB", title=f"frame {i}: the hum's harmonics, the whistle")
axes[1].imshow(10 * np.log10(power_hand.T + 1e-12), aspect="auto", origin="lower", cmap="magma",
               extent=[0, N / SR, 0, SR / 2])
axes[1].set(xlabel="seconds", ylabel="Hz", title="power spectrogram (T, 257), dB")
plt.show()

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
fast = features.fbank([torch.from_numpy(x)], dtype=torch.float64)[0]
assert np.allclose(fast.numpy(), log_mel_hand, atol=1e-9)

fig, ax = plt.subplots(figsize=(10, 3))
image = ax.imshow(log_mel_hand.T, aspect="auto", origin="lower", cmap="magma", extent=[0, N / SR, -0.5, F - 0.5])
ax.axhline(3, color="cyan", lw=0.5, ls=":")
ax.set(xlabel="seconds", ylabel="mel bin", title="log-mel spectrogram (T, 128); dotted: the empty bin 3")
fig.colorbar(image, ax=ax, label="log energy")
plt.show()

# %% [markdown]
# ## 8 · Pad to 1024 frames and normalise: `input_values`
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
fig.colorbar(image, ax=ax)
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
