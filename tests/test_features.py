"""The log-mel front end against independent references: numpy/scipy float64 math for each step,
transformers' numpy `spectrogram` path and Kaldi's own C++ (kaldi-native-fbank) for the whole chain.

Tolerances. Float64 paths are compared tightly (1e-9 and below). Float32 results cannot be compared
bin by bin with a relative tolerance: the float32 FFT's rounding error is about eps32 * log2(512)
times the frame's *total* energy, so a mel bin a million times weaker than the frame's strongest is
dominated by rounding in any float32 implementation (Kaldi's included). `assert_energy_close`
therefore compares mel energies exp(log-mel) with an absolute tolerance scaled by each frame's
largest mel energy (1e-4: ~100x the error bound above, still far below any real mistake, which
moves the strong bins by O(1)), plus a relative 1e-4 and the float32 log floor.
"""

import math
import re
import warnings

import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import features as F
from ast_min import extractor, features_fast

EPS = F.LOG_FLOOR


# ---- helpers ----------------------------------------------------------------------------------------------
def make_clip(seed: int, n: int, amplitude: float, silence: bool = False) -> np.ndarray:
    """White noise + a random tone + a DC offset (+ an optional silent stretch), float64 (n,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    clip = rng.standard_normal(n) * 0.3 + np.sin(2 * np.pi * rng.uniform(30, 7900) * t) + rng.uniform(-0.5, 0.5)
    if silence and n > 1200:
        start = rng.integers(0, n - 1000)
        clip[start : start + 1000] = 0.0
    return amplitude * clip / np.abs(clip).max()


clips = st.builds(
    make_clip,
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(400, 12000),
    amplitude=st.floats(1e-3, 32768.0),  # [-1, 1) audio up to int16-scaled audio (Kaldi's convention)
    silence=st.booleans(),
)


def assert_energy_close(actual, expected, rtol=1e-4, atol=1e-4):
    """Compare log-mel (..., T, F) arrays through their energies; see the module docstring."""
    actual = np.exp(np.asarray(actual, dtype=np.float64))
    expected = np.exp(np.asarray(expected, dtype=np.float64))
    assert actual.shape == expected.shape
    scale = expected.max(axis=-1, keepdims=True)  # the frame's strongest mel bin
    bound = rtol * expected + atol * scale + 2 * EPS
    worst = np.max(np.abs(actual - expected) - bound)
    assert worst <= 0, f"energies differ by {worst:.3g} beyond the tolerance"


def knf_fbank(clip: np.ndarray, num_mel_bins: int) -> np.ndarray:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hanning"
    opts.mel_opts.num_bins = num_mel_bins
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, clip.astype(np.float32))
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def transformers_log_mel(clip: np.ndarray, num_mel_bins: int) -> np.ndarray:
    """transformers' numpy path (what its ASTFeatureExtractor runs without torchaudio), un-padded."""
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "At least one mel filter has all zero values": tested below
        bank = mel_filter_bank(
            num_frequency_bins=257, num_mel_filters=num_mel_bins, min_frequency=20, max_frequency=8000,
            sampling_rate=16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True,
        )
    return spectrogram(
        clip, window_function(400, "hann", periodic=False), frame_length=400, hop_length=160, fft_length=512,
        power=2.0, center=False, preemphasis=0.97, mel_filters=bank, log_mel="log",
        mel_floor=1.192092955078125e-07, remove_dc_offset=True, dtype=np.float64,
    ).T


# ---- the steps, one by one, against float64 numpy/scipy ---------------------------------------------------------
@given(n=st.integers(0, 3000))
@settings(max_examples=40)
def test_frame_count_and_contents_follow_snip_edges(n):
    x = torch.arange(n, dtype=torch.float64)
    frames = F.frame_signal(x)
    expected_count = 1 + (n - 400) // 160 if n >= 400 else 0
    assert F.num_frames(n) == expected_count == frames.shape[0]
    for t in range(expected_count):
        assert torch.equal(frames[t], x[t * 160 : t * 160 + 400])


@given(t=st.integers(1, 3000))
@settings(max_examples=40)
def test_samples_for_frames_is_the_shortest_clip_with_that_many_frames(t):
    n = F.samples_for_frames(t)
    assert F.frame_signal(torch.zeros(n)).shape[0] == t  # counted by framing, not by num_frames' formula
    assert F.frame_signal(torch.zeros(n - 1)).shape[0] == t - 1


def test_hanning_window_is_numpys_symmetric_hann():
    # numpy.hanning is the symmetric window 0.5 - 0.5 cos(2 pi n / (M - 1)), written independently.
    np.testing.assert_allclose(F.hanning_window(400).numpy(), np.hanning(400), atol=1e-15)
    assert F.hanning_window(400)[0] == 0 == F.hanning_window(400)[-1]  # the fast path relies on w[0] == 0


@given(clip=clips)
@settings(max_examples=20)
def test_dc_removal_and_pre_emphasis_match_scipy(clip):
    frames = F.frame_signal(torch.from_numpy(clip))
    centred = F.remove_dc(frames).numpy()
    expected_centred = np.stack([f - f.mean() for f in frames.numpy()])
    np.testing.assert_allclose(centred, expected_centred, rtol=0, atol=1e-12 * max(1.0, np.abs(clip).max()))
    # Kaldi's per-frame pre-emphasis is the FIR filter [1, -0.97] with the frame's first sample as
    # its own predecessor: scipy's lfilter with that initial condition.
    emphasised = F.pre_emphasis(torch.from_numpy(expected_centred)).numpy()
    expected = np.stack([scipy.signal.lfilter([1, -0.97], [1], f, zi=[-0.97 * f[0]])[0] for f in expected_centred])
    np.testing.assert_allclose(emphasised, expected, rtol=0, atol=1e-12 * max(1.0, np.abs(clip).max()))


@given(clip=clips)
@settings(max_examples=15)
def test_power_spectrum_matches_numpy_fft(clip):
    frames = F.frame_signal(torch.from_numpy(clip))
    expected = np.abs(np.fft.rfft(frames.numpy(), n=512)) ** 2
    actual = F.power_spectrum(frames).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9 * expected.max())


# ---- the filterbank ---------------------------------------------------------------------------------------------------
@given(num_mel_bins=st.integers(1, 160))
@settings(max_examples=25)
def test_filterbank_is_transformers_kaldi_filterbank(num_mel_bins):
    from transformers.audio_utils import mel_filter_bank

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = mel_filter_bank(
            num_frequency_bins=257, num_mel_filters=num_mel_bins, min_frequency=20, max_frequency=8000,
            sampling_rate=16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True,
        )
    np.testing.assert_allclose(F.mel_filterbank(num_mel_bins).numpy(), expected, rtol=0, atol=1e-12)


@given(num_mel_bins=st.integers(1, 128), sampling_rate=st.sampled_from([8000, 16000, 22050]))
@settings(max_examples=25)
def test_filterbank_triangles_peak_at_their_mel_centres(num_mel_bins, sampling_rate):
    bank = F.mel_filterbank(num_mel_bins, sampling_rate=sampling_rate).numpy()  # (257, F)
    assert bank.shape == (257, num_mel_bins) and (bank >= 0).all() and (bank <= 1).all()
    # Independent float64 formula: weight = max(0, 1 - |mel(f_k) - centre| / spacing), with the
    # centres equally spaced in mel between mel(20 Hz) and mel(Nyquist).
    mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    spacing = (mel(sampling_rate / 2) - mel(20)) / (num_mel_bins + 1)
    centres = mel(20) + spacing * np.arange(1, num_mel_bins + 1)
    bin_mels = np.array([mel(k * sampling_rate / 512) for k in range(257)])
    expected = np.clip(1 - np.abs(bin_mels[:, None] - centres[None, :]) / spacing, 0, None)
    np.testing.assert_allclose(bank, expected, atol=1e-12)
    # Each non-empty filter rises then falls (one peak), and the peaks move up with the index.
    peaks = [int(np.argmax(col)) for col in bank.T if col.any()]
    assert peaks == sorted(peaks)
    for col in bank.T:
        nz = np.flatnonzero(col)
        if len(nz):
            top = np.argmax(col[nz])
            assert np.all(np.diff(col[nz][: top + 1]) > 0) and np.all(np.diff(col[nz][top:]) < 0)


def test_the_128_bin_filterbank_has_one_empty_filter_like_transformers():
    from transformers.audio_utils import mel_filter_bank

    with pytest.warns(UserWarning, match="all zero"):
        theirs = mel_filter_bank(257, 128, 20, 8000, 16000, None, "kaldi", triangularize_in_mel_space=True)
    ours = F.mel_filterbank(128).numpy()
    assert np.flatnonzero(~ours.any(axis=0)).tolist() == np.flatnonzero(~theirs.any(axis=0)).tolist() == [3]
    # Its log energy is the floor, log(float32 eps), whatever the audio.
    features = extractor.fbank(torch.randn(1, 4000))[0]
    assert torch.all(features[:, 3] == math.log(EPS))


# ---- the whole chain against transformers and Kaldi ---------------------------------------------------------------
@given(clip=clips, num_mel_bins=st.integers(16, 128))
@settings(max_examples=15)
def test_reference_float64_equals_transformers_numpy_path(clip, num_mel_bins):
    expected = transformers_log_mel(clip, num_mel_bins)
    actual = F.log_mel_spectrogram(torch.from_numpy(clip), num_mel_bins=num_mel_bins).numpy()
    # Both compute in float64; transformers rounds its output to float32 (|log| < 40: ~3e-6).
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


@given(clip=clips, num_mel_bins=st.integers(16, 128), dtype=st.sampled_from([torch.float32, torch.float64]))
@settings(max_examples=30)
def test_fbank_equals_transformers(clip, num_mel_bins, dtype):
    expected = transformers_log_mel(clip, num_mel_bins)
    actual = extractor.fbank(torch.from_numpy(clip)[None], num_mel_bins=num_mel_bins, dtype=dtype)[0]
    assert actual.dtype == dtype
    if dtype == torch.float64:
        np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-5)
    else:
        assert_energy_close(actual, expected)


@given(clip=clips, num_mel_bins=st.integers(3, 126))
@settings(max_examples=30)
def test_fbank_equals_kaldi_native_fbank(clip, num_mel_bins):
    # kaldi-native-fbank refuses a filterbank with an empty filter: at 16 kHz it takes up to 126 bins.
    expected = knf_fbank(clip, num_mel_bins)  # Kaldi computes in float32
    actual = extractor.fbank(torch.from_numpy(clip)[None], num_mel_bins=num_mel_bins, dtype=torch.float64)[0]
    assert actual.shape == expected.shape
    assert_energy_close(actual, expected)


def test_kaldi_native_fbank_refuses_128_bins_that_ast_needs():
    with pytest.raises(Exception, match="num_mel_bins too large"):
        knf_fbank(np.zeros(800), 128)


# ---- the fast path against the step-by-step reference --------------------------------------------------------------
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(400, 160 * (2 * features_fast.CHUNK_FRAMES + 3) + 400),  # up to three chunks
    amplitude=st.floats(1e-3, 32768.0),
    num_mel_bins=st.integers(8, 128),
    max_length=st.integers(1, 600),
    norm=st.sampled_from([None, (F.AUDIOSET_MEAN, F.AUDIOSET_STD), (-60.0, 3.0), (2.5, 0.25)]),
)
@settings(max_examples=30)
def test_fast_path_equals_step_by_step_reference(seed, n, amplitude, num_mel_bins, max_length, norm):
    clip = torch.from_numpy(make_clip(seed, n, amplitude))
    reference = F.log_mel_spectrogram(clip, num_mel_bins=num_mel_bins)  # float64
    reference = F.pad_or_truncate(reference, max_length)
    if norm is not None:
        reference = F.normalize(reference, *norm)
    kwargs = dict(num_mel_bins=num_mel_bins, max_length=max_length, do_normalize=norm is not None)
    if norm is not None:
        kwargs.update(mean=norm[0], std=norm[1])
    fast64, frames = extractor.extract_input_values(clip[None], dtype=torch.float64, **kwargs)
    assert frames.tolist() == [F.num_frames(n)]
    # Same float64 math in another order (e^-mean folded into the filterbank): 1e-9 is ~1e5 ulps.
    np.testing.assert_allclose(fast64[0].numpy(), reference.numpy(), rtol=0, atol=1e-9)
    fast32, _ = extractor.extract_input_values(clip[None].float(), **kwargs)
    unscale = (lambda x: x) if norm is None else (lambda x: x * 2 * norm[1] + norm[0])  # back to log-mel
    assert_energy_close(unscale(fast32[0].double()), unscale(reference))


def test_fast_path_keeps_chunks_independent_across_clips():
    # Two clips of different lengths through the thread pool: each equals its own single-clip run.
    a, b = torch.randn(50_000), torch.randn(23_456) * 100
    both, frames = extractor.extract_input_values([a, b], max_length=400)
    assert torch.equal(both[0], extractor.extract_input_values(a[None], max_length=400)[0][0])
    assert torch.equal(both[1], extractor.extract_input_values(b[None], max_length=400)[0][0])
    assert frames.tolist() == [F.num_frames(50_000), F.num_frames(23_456)]


# ---- batching and precision ----------------------------------------------------------------------------------------------
@given(seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4), n=st.integers(400, 8000))
@settings(max_examples=10)
def test_batched_equals_one_by_one(seeds, n):
    batch = torch.stack([torch.from_numpy(make_clip(s, n, 1.0)).float() for s in seeds])
    together = extractor.fbank(batch)
    assert together.shape == (len(seeds), F.num_frames(n), 128)
    for clip, features in zip(batch, together):
        assert torch.equal(features, extractor.fbank(clip[None])[0])
    # The vectorised reference, too: batching changes nothing but summation order.
    reference = F.log_mel_spectrogram(batch.double())
    for clip, features in zip(batch, reference):
        np.testing.assert_allclose(features.numpy(), F.log_mel_spectrogram(clip.double()).numpy(), atol=1e-9)


@given(lengths=st.lists(st.integers(400, 6000), min_size=1, max_size=4))
@settings(max_examples=10)
def test_list_of_clips_of_different_lengths(lengths):
    batch = [torch.randn(n) for n in lengths]
    out = extractor.fbank(batch)
    assert isinstance(out, list) and [o.shape for o in out] == [(F.num_frames(n), 128) for n in lengths]
    for clip, features in zip(batch, out):
        assert torch.equal(features, extractor.fbank(clip[None])[0])


@given(clip=clips)
@settings(max_examples=10)
def test_float32_and_float64_agree(clip):
    x = torch.from_numpy(clip)[None]
    single, double = extractor.fbank(x.float()), extractor.fbank(x, dtype=torch.float64)
    assert single.dtype == torch.float32 and double.dtype == torch.float64
    assert_energy_close(single[0], double[0])


def test_pad_and_truncate_then_normalise():
    """Against numpy's padding and transformers' own `normalize`, not a restatement of the formulas."""
    from transformers import ASTFeatureExtractor as HFExtractor

    x = torch.arange(12.0, dtype=torch.float64).reshape(3, 4)
    assert torch.equal(F.pad_or_truncate(x, 2), x[:2])
    np.testing.assert_array_equal(F.pad_or_truncate(x, 5).numpy(), np.pad(x.numpy(), ((0, 2), (0, 0))))
    reference = HFExtractor(mean=-4.0, std=2.0).normalize(x.numpy())
    np.testing.assert_allclose(F.normalize(x, -4.0, 2.0).numpy(), reference, rtol=1e-15)


# ---- bad input --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "waveforms, message",
    [
        (torch.zeros(1, 0), "empty"),
        (torch.zeros(2, 399), "fewer than one 400-sample"),
        ([torch.zeros(1000), torch.zeros(10)], "clip 1 has 10 samples"),
        (torch.tensor([[0.0] * 500 + [float("nan")] * 10]), "NaN or Inf samples \\(the first at sample 500\\)"),
        (torch.tensor([[float("inf")] * 500]), "NaN or Inf"),
        (torch.zeros(2, 2, 1000), "expected a \\(B, N\\) batch"),
        (torch.zeros(3000), "expected a \\(B, N\\) batch"),
        (torch.zeros(1, 1000, dtype=torch.int16), "dtype torch.int16"),
        ([], "no clips"),
    ],
)
def test_bad_input_raises_a_clear_value_error(waveforms, message):
    with pytest.raises(ValueError, match=message):
        extractor.fbank(waveforms)
    with pytest.raises(ValueError, match=message):
        extractor.extract_input_values(waveforms)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="max_length"):
        extractor.extract_input_values(torch.zeros(1, 1000), max_length=0)
    with pytest.raises(ValueError, match="std must be positive"):
        extractor.extract_input_values(torch.zeros(1, 1000), std=0.0)
    with pytest.raises(ValueError, match="dtype"):
        extractor.fbank(torch.zeros(1, 1000), dtype=torch.float16)
    with pytest.raises(ValueError, match="num_mel_bins"):
        F.mel_filterbank(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_stays_on_cuda_and_matches_cpu():
    x = torch.randn(3, 20_000)
    cpu, _ = extractor.extract_input_values(x)
    gpu, frames = extractor.extract_input_values(x.cuda())
    assert gpu.device.type == "cuda" and frames.device.type == "cuda"
    assert_energy_close(gpu.cpu().double() * 2 * F.AUDIOSET_STD + F.AUDIOSET_MEAN,
                        cpu.double() * 2 * F.AUDIOSET_STD + F.AUDIOSET_MEAN)


def test_strided_and_float64_inputs_take_the_fast_path_correctly():
    base = torch.randn(30_000, 2, dtype=torch.float64)
    column = base[:, 1]  # non-contiguous (stride 2)
    expected = F.log_mel_spectrogram(column.contiguous())
    np.testing.assert_allclose(extractor.fbank([column], dtype=torch.float64)[0].numpy(), expected.numpy(), atol=1e-9)


@given(seed=st.integers(0, 2**32 - 1), lengths=st.lists(st.integers(400, 20_000), min_size=1, max_size=3),
       max_length=st.integers(1, 150), dtype=st.sampled_from([torch.float32, torch.float64]))
@settings(max_examples=10)
def test_accelerator_path_equals_the_cpu_fast_path(seed, lengths, max_length, dtype):
    # The branch CUDA tensors take, run here on the CPU (it is device-agnostic torch).
    rng = np.random.default_rng(seed)
    clips = [torch.from_numpy(rng.standard_normal(n) * 0.1).to(dtype) for n in lengths]
    norm, padding = (F.AUDIOSET_MEAN, F.AUDIOSET_STD), 0.467
    vectorised = [torch.empty(max_length, 128, dtype=dtype) for _ in clips]
    extractor._log_mel_batch_vectorised(vectorised, clips, 128, 16000, norm, padding)
    fast = [torch.empty(max_length, 128, dtype=dtype) for _ in clips]
    extractor._log_mel_batch(fast, clips, 128, 16000, norm, padding)
    for n, v, f in zip(lengths, vectorised, fast):
        t = min(F.num_frames(n), max_length)
        assert torch.all(v[t:] == padding) and torch.all(f[t:] == padding)
        log_mel = lambda x: x[:t].double() * 2 * norm[1] + norm[0]  # noqa: E731
        if dtype == torch.float64:
            np.testing.assert_allclose(v[:t].numpy(), f[:t].numpy(), atol=1e-9)
        else:
            assert_energy_close(log_mel(v), log_mel(f))


def test_batches_from_several_threads_leave_torch_thread_count_alone():
    from concurrent.futures import ThreadPoolExecutor

    before = torch.get_num_threads()
    x = torch.randn(3, 20_000)
    expected, _ = extractor.extract_input_values(x)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: extractor.extract_input_values(x)[0], range(6)))
    assert all(torch.equal(r, expected) for r in results)
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_clips_on_two_devices_are_refused():
    with pytest.raises(ValueError, match="move all clips to one device"):
        extractor.fbank([torch.zeros(1000), torch.zeros(1000, device="cuda")])


def test_finite_but_absurd_samples_are_refused_too():
    # beyond int16 full scale the power spectrum can overflow float32 (1e20 squared is inf): refused, by clip
    for peak in (3e38, 1e20, 32768.5):
        x = torch.zeros(1, 1000)
        x[0, 700] = -peak
        with pytest.raises(ValueError, match=rf"^clip 0 has samples up to {re.escape(f'{peak:.3g}')} \(the first beyond \+-32768 at "
                           r"sample 700\): audio must lie in \[-1, 1\)"):
            extractor.fbank(x)
    loudest = torch.sign(torch.randn(1, 1000, generator=torch.Generator().manual_seed(0))) * 32768.0
    assert torch.isfinite(extractor.fbank(loudest)).all()  # int16 scale, square wave at full scale: fine (Kaldi's convention)


@given(clip=clips, offset=st.floats(-0.5, 0.5))
@settings(max_examples=10)
def test_removing_the_waveform_mean_first_changes_nothing(clip, offset):
    # The original repo subtracts the waveform's mean before fbank; per-frame DC removal makes that
    # (or any constant offset) a no-op, up to float64 rounding.
    x = torch.from_numpy(clip)
    shifted = x + offset * np.abs(clip).max()
    for y in (x - x.mean(), shifted):
        np.testing.assert_allclose(F.log_mel_spectrogram(y).numpy(), F.log_mel_spectrogram(x).numpy(), atol=1e-6)
