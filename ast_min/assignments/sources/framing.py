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
# # Assignment `framing` · Kaldi's framing, for any frame length and shift
#
# Chapter 01 (`notebooks/01_log_mel_spectrogram.py`, §[Frames: 25 ms every 10 ms],
# §[DC removal and pre-emphasis] and §[The window]) builds these steps for AST's 400-sample frames
# every 160 samples. Here you write them for **any** frame length L and shift S, exactly as Kaldi's
# `fbank` does:
#
# 1. `frame_signal(waveform, frame_length, frame_shift)`: (N,) -> (T, L), `snip_edges=True`: only
#    whole frames, T = 1 + (N - L) // S, and (0, L) when N < L.
# 2. `remove_dc(frames)`: subtract each frame's own mean.
# 3. `pre_emphasis(frames, coeff=0.97)`: y[n] = x[n] - coeff * x[n-1] **inside each frame**; the
#    first sample of a frame has no predecessor in the frame, and Kaldi uses the sample itself.
# 4. `hanning_window(length)`: Kaldi's "hanning" window, (L,) float64.
# 5. `prepare_frames(waveform, frame_length, frame_shift, coeff=0.97)`: 1 to 4 in Kaldi's order.
#
# Write the bodies with torch only: the grader refuses code that calls ast-min's own front end.
# Check your work with `ast-min assignment check framing` (it tries inputs you did not choose and,
# when you get one wrong, shows the smallest one and names the likely mistake).
#
# Shape legend: N samples, T frames, L frame length, S frame shift.

# %%
import torch


# %%
def frame_signal(waveform: torch.Tensor, frame_length: int, frame_shift: int) -> torch.Tensor:
    """Cut (N,) into whole overlapping frames (T, frame_length), T = 1 + (N - L) // S; (0, L) when N < L."""
    ### BEGIN SOLUTION
    if waveform.shape[-1] < frame_length:
        return waveform.new_zeros(0, frame_length)
    return waveform.unfold(-1, frame_length, frame_shift).clone()  # (T, L)
    ### END SOLUTION


# %%
def remove_dc(frames: torch.Tensor) -> torch.Tensor:
    """(T, L) -> (T, L): each frame minus its own mean."""
    ### BEGIN SOLUTION
    return frames - frames.mean(dim=-1, keepdim=True)
    ### END SOLUTION


# %%
def pre_emphasis(frames: torch.Tensor, coeff: float = 0.97) -> torch.Tensor:
    """(T, L) -> (T, L): y[n] = x[n] - coeff x[n-1] within each frame, y[0] = x[0] - coeff x[0]."""
    ### BEGIN SOLUTION
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # (T, L), shifted right by one
    return frames - coeff * previous
    ### END SOLUTION


# %%
def hanning_window(length: int) -> torch.Tensor:
    """Kaldi's symmetric Hann window, (length,) float64, zero at both ends (length >= 2)."""
    ### BEGIN SOLUTION
    n = torch.arange(length, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2 * torch.pi * n / (length - 1))
    ### END SOLUTION


# %%
def prepare_frames(waveform: torch.Tensor, frame_length: int, frame_shift: int, coeff: float = 0.97) -> torch.Tensor:
    """(N,) -> (T, L): framed, DC removed, pre-emphasised, windowed, in that order."""
    ### BEGIN SOLUTION
    frames = pre_emphasis(remove_dc(frame_signal(waveform, frame_length, frame_shift)), coeff)
    return frames * hanning_window(frame_length).to(frames.dtype)
    ### END SOLUTION


# %% [markdown]
# Try your functions here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    x = torch.arange(10, dtype=torch.float64)
    print(frame_signal(x, 4, 3))
    print(hanning_window(5))
