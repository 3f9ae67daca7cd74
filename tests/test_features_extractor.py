"""`ast_min.ASTFeatureExtractor` and `compute_norm_stats` against `transformers.ASTFeatureExtractor`
(its numpy path: torchaudio does not load here) and plain numpy statistics.

Tolerance: our float32 features are compared through mel energies scaled by each frame's largest
(see tests/test_features.py: float32 FFT rounding grows with the frame's total energy, not the
bin's own); padding rows and layout must match exactly.
"""

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ast_min
from ast_min import features as F
from ast_min.extractor import fbank
from test_features import assert_energy_close, make_clip


def transformers_extractor(**kwargs):
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(**kwargs)


def run_transformers(extractor, clips, sampling_rate=16000):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its empty-filter warning at 128 bins
        return extractor(clips, sampling_rate=sampling_rate, return_tensors="np")["input_values"]


def to_log_mel(values, do_normalize, mean, std):
    return values * 2 * std + mean if do_normalize else values


@given(
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3),
    lengths=st.lists(st.integers(400, 12_000), min_size=3, max_size=3),
    amplitude=st.floats(1e-3, 1.0),
    num_mel_bins=st.integers(16, 128),
    max_length=st.integers(1, 120),
    do_normalize=st.booleans(),
    mean=st.floats(-8, 0),
    std=st.floats(1, 8),
    sampling_rate=st.sampled_from([16000, 16000, 8000, 22050]),  # frames stay 400/160 samples, as transformers
)
@settings(max_examples=25)
def test_extractor_equals_transformers(seeds, lengths, amplitude, num_mel_bins, max_length, do_normalize, mean, std,
                                       sampling_rate):
    clips = [make_clip(s, n, amplitude).astype(np.float32) for s, n in zip(seeds, lengths)]
    options = dict(num_mel_bins=num_mel_bins, max_length=max_length, do_normalize=do_normalize, mean=mean, std=std,
                   sampling_rate=sampling_rate)
    expected = run_transformers(transformers_extractor(**options), clips, sampling_rate)
    actual = ast_min.ASTFeatureExtractor(**options)(clips, sampling_rate=sampling_rate, return_tensors="np")["input_values"]
    assert actual.shape == expected.shape == (len(clips), max_length, num_mel_bins) and actual.dtype == np.float32
    for clip, a, e in zip(clips, actual, expected):
        t = min(F.num_frames(len(clip)), max_length)
        # the padding, normalised like transformers' (which rounds in float32 arithmetic: 1 ulp)
        np.testing.assert_allclose(a[t:], e[t:], rtol=2e-7, atol=0)
        assert_energy_close(to_log_mel(a[:t], do_normalize, mean, std), to_log_mel(e[:t], do_normalize, mean, std))


def test_input_kinds_and_return_types():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(5000).astype(np.float32), rng.standard_normal(7000).astype(np.float32)
    extractor = ast_min.ASTFeatureExtractor(max_length=50)
    expected = extractor([a, b], sampling_rate=16000, return_tensors="np").input_values  # (2, 50, 128)
    assert expected.shape == (2, 50, 128)
    # transformers' un-tensored output: a list of (max_length, F) arrays, one clip treated as a batch of one
    listed = extractor([a, b], sampling_rate=16000)["input_values"]
    assert isinstance(listed, list) and all(np.array_equal(x, y) for x, y in zip(listed, expected))
    one = extractor(a, sampling_rate=16000, return_tensors="pt").input_values
    assert isinstance(one, torch.Tensor) and torch.equal(one[0], torch.from_numpy(expected[0]))
    as_floats = extractor(a.tolist(), sampling_rate=16000, return_tensors="np").input_values
    np.testing.assert_array_equal(as_floats[0], expected[0])
    same_length = np.stack([a, a])  # a (B, N) array
    np.testing.assert_array_equal(extractor(same_length, return_tensors="np").input_values[1], expected[0])
    # torch in, torch out (same device) unless numpy is asked for
    tensors = extractor([torch.from_numpy(a), torch.from_numpy(b)], sampling_rate=16000).input_values
    assert isinstance(tensors, torch.Tensor) and torch.equal(tensors, torch.from_numpy(expected))
    batch = extractor(torch.from_numpy(same_length), return_tensors="np").input_values
    assert isinstance(batch, np.ndarray) and np.array_equal(batch[0], expected[0])
    # float64 input is read as float32, as transformers does
    np.testing.assert_array_equal(extractor(a.astype(np.float64), return_tensors="np").input_values[0], expected[0])


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_integer_pcm_is_scaled_to_unit_range(dtype):
    """Full scale -min (2^15, 2^31), as soundfile reads PCM_16/PCM_32 files; float64 division as reference."""
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    pcm = rng.integers(info.min, info.max, size=8000, endpoint=True).astype(dtype)
    extractor = ast_min.ASTFeatureExtractor(max_length=60)
    from_int = extractor(pcm, return_tensors="np").input_values
    from_float = extractor((pcm.astype(np.float64) / -float(info.min)).astype(np.float32), return_tensors="np").input_values
    assert np.abs(from_float).max() > 0.1  # a loud clip, not the log floor: a wrong scale would show
    np.testing.assert_array_equal(from_int, from_float)
    from_torch = extractor(torch.from_numpy(pcm), return_tensors="np").input_values
    np.testing.assert_array_equal(from_torch, from_float)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32])
def test_big_endian_arrays_give_the_native_arrays_features(dtype):
    """Byte order is storage, not signal: a big-endian copy of a clip (as read from an AIFF) gives its features."""
    pcm = np.random.default_rng(2).integers(-(2**14), 2**14, size=6000)
    clip = (pcm / 2**15).astype(dtype) if np.dtype(dtype).kind == "f" else pcm.astype(dtype)
    big = clip.astype(np.dtype(dtype).newbyteorder(">"))
    assert big.dtype.byteorder == ">" and np.array_equal(big, clip)
    extractor = ast_min.ASTFeatureExtractor(max_length=30)
    np.testing.assert_array_equal(extractor(big, return_tensors="np").input_values, extractor(clip, return_tensors="np").input_values)


@pytest.mark.parametrize(
    "raw, message",
    [
        (np.zeros((2, 2, 1000), np.float32), "got shape \\(2, 2, 1000\\).*downmix"),
        ([np.zeros((2, 1000), np.float32)], "clip 0 has shape \\(2, 1000\\).*mono"),
        (np.zeros(0, np.float32), "clip 0 is empty"),
        ([], "raw_speech is empty"),
        (np.zeros(300, np.float32), "fewer than one 400-sample \\(25 ms\\) frame: pad it"),
        (np.array([0.1] * 800 + [np.nan]), "NaN or Inf"),
        (np.full(800, np.inf, np.float32), "NaN or Inf"),
        (np.zeros(800, np.uint8), "integer dtype uint8"),
        (np.zeros(800, np.int64), "integer dtype int64"),
        (np.zeros(800, np.complex64), "real float samples"),
        ("a.wav", "must be a numpy array"),
    ],
)
def test_bad_input_gets_a_clear_value_error(raw, message):
    with pytest.raises(ValueError, match=message):
        ast_min.ASTFeatureExtractor()(raw, sampling_rate=16000)


def test_wrong_sampling_rate_names_both_rates_and_the_fix():
    with pytest.raises(ValueError, match="44100 Hz.*expects 16000 Hz.*load_audio"):
        ast_min.ASTFeatureExtractor()(np.zeros(1000, np.float32), sampling_rate=44100)
    with pytest.raises(ValueError, match="return_tensors"):
        ast_min.ASTFeatureExtractor()(np.zeros(1000, np.float32), return_tensors="tf")


def test_preprocessor_config_round_trips_with_transformers(tmp_path):
    ours = ast_min.ASTFeatureExtractor(num_mel_bins=64, max_length=512, mean=-6.6268077, std=5.358466,
                                       do_normalize=True, return_attention_mask=True)
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers_extractor().from_pretrained(tmp_path / "ours")
    for key in ["num_mel_bins", "max_length", "mean", "std", "do_normalize", "return_attention_mask", "sampling_rate"]:
        assert getattr(theirs, key) == getattr(ours, key), key
    transformers_extractor(num_mel_bins=100, max_length=300, mean=-1.25, std=3.5, do_normalize=False).save_pretrained(
        tmp_path / "theirs"
    )
    back = ast_min.ASTFeatureExtractor.from_pretrained(tmp_path / "theirs")
    assert (back.num_mel_bins, back.max_length, back.mean, back.std, back.do_normalize) == (100, 300, -1.25, 3.5, False)
    # the file itself, and keyword overrides
    assert ast_min.ASTFeatureExtractor.from_pretrained(tmp_path / "theirs" / "preprocessor_config.json", std=2.0).std == 2.0


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json"):
        ast_min.ASTFeatureExtractor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ast_min.ASTFeatureExtractor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"std": 0.0}))
    with pytest.raises(ValueError, match="std must be positive"):
        ast_min.ASTFeatureExtractor.from_pretrained(tmp_path)


# ---- compute_norm_stats ------------------------------------------------------------------------------------------------
@given(
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=5),
    lengths=st.lists(st.integers(400, 9000), min_size=5, max_size=5),
    max_length=st.one_of(st.none(), st.integers(1, 80)),
    batch_size=st.integers(1, 4),
)
@settings(max_examples=10)
def test_norm_stats_are_the_mean_of_per_clip_means_and_stds(seeds, lengths, max_length, batch_size):
    clips = [make_clip(s, n, 0.5).astype(np.float32) for s, n in zip(seeds, lengths)]
    # Reference: transformers' un-normalised features and numpy statistics (ddof=1 as torch.std).
    extractor = transformers_extractor(do_normalize=False, max_length=max_length or 10_000)
    per_clip = []
    for clip, features in zip(clips, run_transformers(extractor, clips)):
        features = features if max_length else features[: F.num_frames(len(clip))]
        per_clip.append((features.astype(np.float64).mean(), features.astype(np.float64).std(ddof=1)))
    expected = np.mean(per_clip, axis=0)
    actual = ast_min.compute_norm_stats(iter(clips), max_length=max_length, batch_size=batch_size)
    # float32 features vs transformers' float64-then-rounded ones: each value differs by float32
    # rounding (2^-24 |x|, |x| < 40: under 3e-6) except in weak bins, bounded by assert_energy_close's
    # 1e-4 of the frame's largest energy; a mean or std of such values moves by no more than the
    # largest of them, so 1e-4 holds with the weak bins' rounding as the margin.
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_norm_stats_read_files_and_refuse_nothing(tmp_path):
    import soundfile

    clip = make_clip(3, 8000, 0.5).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", clip, 16000, subtype="FLOAT")
    assert ast_min.compute_norm_stats([tmp_path / "a.wav"]) == ast_min.compute_norm_stats([clip])
    with pytest.raises(ValueError, match="no clips"):
        ast_min.compute_norm_stats([])
    with pytest.raises(ValueError, match="collection of clips"):
        ast_min.compute_norm_stats(clip)


def test_norm_stats_name_a_file_too_short_for_a_frame(tmp_path):
    import soundfile

    soundfile.write(tmp_path / "a.wav", make_clip(3, 8000, 0.5).astype(np.float32), 16000)
    soundfile.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match=r"short.wav' lasts 6.2 ms, shorter than one 25 ms frame"):
        ast_min.compute_norm_stats([tmp_path / "a.wav", tmp_path / "a.wav", tmp_path / "short.wav"], batch_size=2)


# ---- settings and inputs that used to fail deep inside or give NaN features ------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (dict(mean=float("nan")), "mean must be a finite number, got nan"),
        (dict(std=float("inf")), "std must be a finite number, got inf"),
        (dict(std=0.0), "std must be positive"),
        (dict(std=None), "std must be a finite number, got None"),
        (dict(mean="-4.27"), "mean must be a finite number, got '-4.27'"),
        (dict(num_mel_bins=64.0), "num_mel_bins must be an integer, got float 64.0"),
        (dict(max_length=0), "max_length must be at least 1"),
    ],
)
def test_bad_settings_are_refused_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        ast_min.ASTFeatureExtractor(**options)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda clips: fbank(clips, num_mel_bins="128"), "num_mel_bins must be an integer, got str '128'"),
        (lambda clips: fbank(clips, sampling_rate=0), "sampling_rate must be at least 1, got 0"),
        (lambda clips: ast_min.compute_norm_stats(list(clips), max_length=0), "max_length must be at least 1"),
        (lambda clips: ast_min.compute_norm_stats(list(clips), num_mel_bins=1.5), "num_mel_bins must be an integer"),
        (lambda clips: ast_min.compute_norm_stats(list(clips), batch_size=0), "batch_size must be at least 1"),
    ],
)
def test_bad_settings_of_fbank_and_compute_norm_stats_are_refused_by_name(call, message):
    # before, these failed inside numpy/torch or returned (nan, nan)
    with pytest.raises(ValueError, match=message):
        call(torch.zeros(2, 800))


@pytest.mark.parametrize("raw", [[], np.zeros((0, 800)), torch.zeros(0, 800)])
def test_an_empty_batch_is_refused_by_the_extractor(raw):
    # a (0, N) array used to reach an IndexError inside the batched front end
    with pytest.raises(ValueError, match="raw_speech is empty: pass at least one clip"):
        ast_min.ASTFeatureExtractor()(raw)
    with pytest.raises(ValueError, match="no clips given"):
        fbank(torch.zeros(0, 800))


def test_saving_settings_onto_a_file_is_refused_and_keeps_the_file(tmp_path):
    (tmp_path / "file").write_text("mine")
    for settings in (ast_min.ASTFeatureExtractor(), ast_min.ASTConfig()):
        with pytest.raises(ValueError, match="is a file, not a directory"):  # was a bare FileExistsError
            settings.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("features", [[], {"input_values": []}])
def test_pad_refuses_an_empty_batch_by_name(features):
    with pytest.raises(ValueError, match="pad got no"):  # was an IndexError
        ast_min.ASTFeatureExtractor().pad(features)


def test_pad_refuses_an_unknown_padding_side_where_transformers_does():
    """transformers raises for a padding_side other than right/left once a row needs padding; so must ast-min."""
    from transformers import ASTFeatureExtractor as HFExtractor

    unequal, equal = [np.zeros(3), np.zeros(5)], [np.zeros(4), np.zeros(4)]
    for extractor in (HFExtractor(padding_side="middle"), ast_min.ASTFeatureExtractor(padding_side="middle")):
        with pytest.raises(ValueError, match="middle"):
            extractor.pad({"input_values": unequal}, return_tensors="np")
        assert extractor.pad({"input_values": equal}, return_tensors="np")["input_values"].shape == (2, 4)


def test_tensors_that_require_grad_are_featurised_as_their_values():
    clip = torch.from_numpy(make_clip(5, 6000, 0.5).astype(np.float32))
    extractor = ast_min.ASTFeatureExtractor(max_length=40)
    expected = extractor(clip, return_tensors="pt").input_values
    got = extractor(clip.clone().requires_grad_(True), return_tensors="pt").input_values
    assert torch.equal(got, expected) and not got.requires_grad
    assert torch.equal(fbank(clip[None].clone().requires_grad_(True)), fbank(clip[None]))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_audio_is_refused_as_complex(dtype):
    with pytest.raises(ValueError, match=f"complex dtype {dtype}: pass real float samples"):
        ast_min.ASTFeatureExtractor()(torch.zeros(800, dtype=dtype))
    with pytest.raises(ValueError, match="complex dtype"):
        fbank(torch.zeros(1, 800, dtype=dtype))


def test_an_interrupted_extractor_save_keeps_the_old_settings(tmp_path, monkeypatch):
    import os

    ast_min.ASTFeatureExtractor(mean=-1.0, std=2.0).save_pretrained(tmp_path)
    with monkeypatch.context() as patch:
        def interrupted(*args):
            raise KeyboardInterrupt

        patch.setattr(os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ast_min.ASTFeatureExtractor(mean=-7.0, std=3.0).save_pretrained(tmp_path)
    assert ast_min.ASTFeatureExtractor.from_pretrained(tmp_path).mean == -1.0
    assert os.listdir(tmp_path) == ["preprocessor_config.json"]  # no temporary file left
