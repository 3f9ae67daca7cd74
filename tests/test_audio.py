"""`ast_min.load_audio`: decoding against the samples written (soundfile's own encoder), downmixing
against numpy's mean, resampling against the analytic tone (float64 math) and an aliasing check.
"""

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import load_audio
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
    # soxr HQ reproduces these tones to within 5e-7 (measured over 100 Hz-3 kHz from each rate):
    # 1e-5 leaves a margin, while a wrong rate, delay or gain would miss by orders of magnitude more.
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


def test_other_target_rate(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    assert load_audio(tmp_path / "a.wav", sampling_rate=8000).shape == (8000,)
    with pytest.raises(ValueError, match="positive integer"):
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
