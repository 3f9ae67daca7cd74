"""`ast_min.load_audio`: decoding against the samples written (soundfile's own encoder), downmixing
against numpy's mean, resampling against the analytic tone (float64 math) and an aliasing check.
"""

import os
import struct
import threading
import warnings

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import load_audio
from ast_min import audio
from ast_min.audio import resample


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5000),
    channels=st.integers(1, 3),
    fmt=st.sampled_from([("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_24")]),
)
@settings(max_examples=20)
def test_lossless_files_decode_to_the_channel_mean(tmp_path_factory, seed, n, channels, fmt):
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-32768, 32768, size=(n, channels)).astype(np.int16)
    path = tmp_path_factory.mktemp("audio") / f"clip.{fmt[0].lower()}"
    soundfile.write(path, pcm / 32768, 16000, format=fmt[0], subtype=fmt[1])  # k / 32768 is exact in each format
    waveform = load_audio(path)
    assert waveform.dtype == np.float32 and waveform.shape == (n,)
    # int16 full scale is 32768 (torchaudio's and soundfile's convention); channels are averaged.
    expected = (pcm.astype(np.float64) / 32768).mean(axis=1)
    np.testing.assert_allclose(waveform, expected, rtol=0, atol=1e-7)


def test_ogg_vorbis_decodes_close_to_the_original(tmp_path):
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "tone.ogg", tone, 16000, format="OGG", subtype="VORBIS")
    decoded = load_audio(tmp_path / "tone.ogg")
    # Vorbis is lossy (and may shift by a few samples): compare the spectrum's peak and level.
    spectrum = np.abs(np.fft.rfft(decoded[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 1
    assert abs(np.sqrt(np.mean(decoded**2)) - 0.5 / np.sqrt(2)) < 0.02


@given(rate=st.sampled_from([8000, 22050, 44100, 48000]), freq=st.floats(100, 3000))
@settings(max_examples=10)
def test_resampled_tone_matches_the_analytic_tone(tmp_path_factory, rate, freq):
    seconds = 0.5
    tone = lambda sr: 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)  # noqa: E731
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    soundfile.write(path, tone(rate), rate, subtype="FLOAT")
    waveform = load_audio(path)
    assert abs(len(waveform) - seconds * 16000) <= 1
    middle = slice(800, 7200)  # away from the filter's edge transients
    # soxr's "HQ" is its 20-bit quality: passband error and stop-band leakage below 2^-20 ~ 1e-6 of
    # full scale. 1e-5 leaves a margin over that, while a wrong rate, delay or gain would miss by
    # orders of magnitude more.
    np.testing.assert_allclose(waveform[middle], tone(16000)[middle], atol=1e-5)


def test_resampling_removes_content_above_the_new_nyquist():
    # A 12 kHz tone at 48 kHz. Keeping every third sample would fold it to 4 kHz at full level;
    # the anti-aliasing filter must remove it instead.
    t = np.arange(48000) / 48000
    out = resample(0.5 * np.sin(2 * np.pi * 12000 * t), 48000, 16000)
    assert len(out) == 16000
    naive = (0.5 * np.sin(2 * np.pi * 12000 * t))[::3]
    assert np.sqrt(np.mean(naive**2)) > 0.3
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) < 1e-3


def test_the_default_rate_is_the_front_ends():
    # written out in ast_min.audio to keep it free of torch; the two must not drift apart
    from ast_min.features import SAMPLING_RATE

    assert audio.DEFAULT_SAMPLING_RATE == SAMPLING_RATE


def test_other_target_rate(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    assert load_audio(tmp_path / "a.wav", sampling_rate=8000).shape == (8000,)
    with pytest.raises(ValueError, match=r"sampling_rate must be an integer number of Hz in \[1000, 1000000\], got 0"):
        load_audio(tmp_path / "a.wav", sampling_rate=0)


def test_missing_unreadable_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio file at"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="is a directory"):
        load_audio(tmp_path)
    (tmp_path / "junk.wav").write_bytes(b"this is not audio" * 10)
    with pytest.raises(ValueError, match="cannot decode .*ffmpeg"):
        load_audio(tmp_path / "junk.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError, match="holds no samples"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(ValueError, match="mono waveform"):
        resample(np.zeros((2, 100)), 44100, 16000)


# ---- damaged and hostile files -------------------------------------------------------------------
def _wav_with_rate(path, rate):
    """A 0.25 s 16-bit WAV whose header then claims `rate` Hz (both the rate and the byte-rate fields)."""
    soundfile.write(path, np.zeros(4000, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RIFF" and data[12:16] == b"fmt "  # soundfile's canonical 44-byte header
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", 2 * rate)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate", [1, 999, 1_000_001, 2**31 - 1])
def test_implausible_header_rates_are_refused_before_reading(tmp_path, rate):
    # At 1 Hz the file's 4000 samples claim 67 minutes: resampled to 16 kHz they would be 64 M
    # samples; a 200 KB file claims 28 hours (6 GB). The header alone must be enough to refuse it.
    path = _wav_with_rate(tmp_path / "odd.wav", rate)
    with pytest.raises(ValueError, match=rf"odd.wav.* claims a sampling rate of {rate} Hz.*corrupt"):
        load_audio(path)


def test_plausible_edge_rates_are_read(tmp_path):
    for rate in (audio.MIN_SAMPLING_RATE, 384_000):
        soundfile.write(tmp_path / "a.wav", np.zeros(rate // 10, np.float32), rate)
        assert load_audio(tmp_path / "a.wav").shape == (1600,)  # 0.1 s at 16 kHz


def test_resample_refuses_implausible_rates_and_sizes(monkeypatch):
    with pytest.raises(ValueError, match="orig_rate must be an integer number of Hz"):
        resample(np.zeros(100), 1, 16000)
    with pytest.raises(ValueError, match="new_rate must be an integer"):
        resample(np.zeros(100), 16000, 10**9)
    monkeypatch.setattr(audio, "MAX_SECONDS", 1)  # the bound's mechanism, on a size small enough to build
    with pytest.raises(ValueError, match=r"lasts 0.0 h \(32000 samples at 16000 Hz\), more than.*cut it"):
        resample(np.zeros(32000), 16000, 8000)


def test_files_longer_than_the_bound_are_refused_before_reading(tmp_path, monkeypatch):
    soundfile.write(tmp_path / "long.wav", np.zeros(32000, np.float32), 16000)
    monkeypatch.setattr(audio, "MAX_SECONDS", 1)
    with pytest.raises(ValueError, match=r"long.wav' lasts .* more than the 0 h"):
        load_audio(tmp_path / "long.wav")


@pytest.mark.parametrize("subtype, frame_bytes", [("PCM_16", 2), ("FLOAT", 4)])
def test_a_wav_cut_short_of_its_header_is_read_with_a_warning(tmp_path, subtype, frame_bytes):
    clip = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    soundfile.write(tmp_path / "whole.wav", clip, 16000, subtype=subtype)
    data = (tmp_path / "whole.wav").read_bytes()
    start = data.index(b"data") + 8  # the samples follow the data chunk's id and size
    (tmp_path / "cut.wav").write_bytes(data[: start + 3000 * frame_bytes])  # the header still declares 8000 frames
    with pytest.warns(UserWarning, match=r"cut.wav' holds 3000 frames but its header declares 8000"):
        cut = load_audio(tmp_path / "cut.wav")
    assert len(cut) == 3000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: no warning
        assert len(load_audio(tmp_path / "whole.wav")) == 8000


def test_non_finite_samples_name_the_file(tmp_path):
    clip = np.zeros(1600, np.float32)
    clip[800] = np.nan
    soundfile.write(tmp_path / "bad.wav", clip, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"bad.wav' has NaN or Inf samples \(the first at sample 800, 0.050 s\)"):
        load_audio(tmp_path / "bad.wav")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    outcome = []

    def read():
        try:
            load_audio(tmp_path / "pipe.wav")
        except ValueError as e:
            outcome.append(str(e))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader so the test process can end
        with open(tmp_path / "pipe.wav", "wb"):
            pass
        pytest.fail("load_audio blocked on a named pipe")
    assert outcome and "not a regular file" in outcome[0], outcome
