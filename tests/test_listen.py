"""`ast-min listen` against `ast-min classify --window` on the same audio, and against transformers.

The windows must be classify's: same starts (including the last one flush with the end), same
samples. The stream reads a file chunk by chunk (soxr's streaming resampler when the rate is not
16 kHz) or raw PCM from standard input, and classifies one window at a time where classify batches
them; so the scores agree to float32 rounding of a differently blocked matmul (1e-5 on
probabilities leaves a wide margin; a window shifted by one hop or a resampler that drops samples
moves scores by far more on these tone-plus-noise clips). Against transformers (extractor and model
on windows cut here by hand), 2e-3 as in test_classify.py: the two front ends differ by float32
FFT/log rounding.
"""

import io
import itertools
import json
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import transformers
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ast_min import listen as listen_mod
from ast_min.inference import window_starts
from ast_min.cli import main as cli_main
from ast_min.listen import RingBuffer, pcm16_chunks, stream_windows
from hf_reference import save_random_hf_checkpoint, tiny_config

SAME_CODE = 1e-5
VS_TRANSFORMERS = 2e-3
LABELS = {i: f"sound {i}" for i in range(5)}
WINDOW = 400 + 63 * 160  # tiny model: 64 frames at 16 kHz


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = tiny_config(id2label=LABELS, problem_type="multi_label_classification")
    return save_random_hf_checkpoint(tmp_path_factory.mktemp("ckpt") / "c", config, seed=11, preprocessor=True)


def signal(seconds, rate, channels=1, seed=0):
    """Tones that change every 0.3 s over noise: each window sees different audio."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    freq = 200 + 150 * (np.floor(t / 0.3) % 7)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / rate)[:, None] + 0.05 * rng.standard_normal((n, channels))
    return x.astype(np.float32)


def run_cli(argv, capsys):
    code = cli_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listen_json(out):
    return [json.loads(line) for line in out.splitlines()]


def classify_windows(path, checkpoint, hop, capsys):
    code, out, _ = run_cli(["classify", str(path), "--checkpoint", str(checkpoint), "--window", "--hop", str(hop),
                            "--json", "--top-k", str(len(LABELS))], capsys)  # fmt: skip
    assert code == 0
    return json.loads(out)[0]["windows"]


def scores_by_label(predictions):
    return np.array([{p["label"]: p["score"] for p in predictions}[LABELS[i]] for i in range(len(LABELS))])


def assert_same_windows(live, windows, tol):
    assert [(w["start"], w["end"]) for w in live] == [(w["start"], w["end"]) for w in windows]
    err = max(float(np.abs(scores_by_label(a["predictions"]) - scores_by_label(b["predictions"])).max())
              for a, b in zip(live, windows))  # fmt: skip
    assert err <= tol, f"max |listen - classify| score difference {err:.3g}"


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2)])
def test_file_as_if_live_equals_classify_window(tmp_path, checkpoint, capsys, rate, channels):
    path = tmp_path / f"clip_{rate}.wav"
    sf.write(path, signal(2.3, rate, channels), rate, subtype="FLOAT")
    code, out, err = run_cli(["listen", "--input", str(path), "--checkpoint", str(checkpoint), "--hop", "0.25",
                              "--json", "--top-k", str(len(LABELS))], capsys)  # fmt: skip
    assert code == 0, err
    live = listen_json(out)
    windows = classify_windows(path, checkpoint, 0.25, capsys)
    # 2.3 s = 36800 samples: starts every 4000 while a full window fits, then one flush with the end
    assert [round(w["start"] * 16000) for w in live] == window_starts(36800, WINDOW, 4000)
    assert live[-1]["start"] == round((36800 - WINDOW) / 16000, 3)
    assert_same_windows(live, windows, SAME_CODE)
    for w in live:  # the processing time and the real-time factor agree with each other
        assert w["processing_ms"] > 0 and abs(w["rtf"] - w["processing_ms"] / 1000 / 0.25) < 1e-3
    assert "windows" in err and "real-time factor" in err


def reference_scores(checkpoint, clips):
    model = transformers.ASTForAudioClassification.from_pretrained(checkpoint).eval()
    extractor = transformers.ASTFeatureExtractor.from_pretrained(checkpoint)
    x = extractor(clips, sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        return model(x).logits.sigmoid().numpy()


def test_stdin_pcm_subprocess_against_transformers(checkpoint):
    x = signal(1.4, 16000, seed=3)[:, 0]
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    proc = subprocess.run(
        [sys.executable, "-m", "ast_min.cli", "listen", "--input", "-", "--checkpoint", str(checkpoint),
         "--hop", "0.3", "--json", "--top-k", str(len(LABELS))],
        input=pcm.tobytes(), capture_output=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    live = listen_json(proc.stdout.decode())
    waveform = pcm.astype(np.float32) / 32768  # what soundfile gives for 16-bit PCM
    starts = window_starts(len(waveform), WINDOW, 4800)
    assert [round(w["start"] * 16000) for w in live] == starts
    ref = reference_scores(checkpoint, [waveform[s : s + WINDOW] for s in starts])
    ours = np.stack([scores_by_label(w["predictions"]) for w in live])
    err = float(np.abs(ours - ref).max())
    assert err <= VS_TRANSFORMERS, f"max |listen - transformers| = {err:.3g}"


def test_stdin_at_another_rate_equals_classify(tmp_path, checkpoint, capsys, monkeypatch):
    """8 kHz PCM through the streaming resampler = the 8 kHz file through load_audio's one-shot soxr."""
    x = np.clip(signal(1.6, 8000, seed=4)[:, 0], -1, 1)
    pcm = np.round(x * 32767).astype("<i2")
    path = tmp_path / "eight.wav"
    sf.write(path, pcm, 8000, subtype="PCM_16")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    code, out, err = run_cli(["listen", "--input", "-", "--rate", "8000", "--checkpoint", str(checkpoint), "--json",
                              "--top-k", str(len(LABELS))], capsys)  # fmt: skip
    assert code == 0, err
    assert_same_windows(listen_json(out), classify_windows(path, checkpoint, WINDOW // 2 / 16000, capsys), SAME_CODE)


def test_stream_shorter_than_a_window_is_one_padded_window(tmp_path, checkpoint, capsys):
    path = tmp_path / "short.wav"
    sf.write(path, signal(0.3, 16000, seed=5), 16000, subtype="FLOAT")
    code, out, _ = run_cli(["listen", "--input", str(path), "--checkpoint", str(checkpoint), "--json",
                            "--top-k", str(len(LABELS))], capsys)  # fmt: skip
    assert code == 0
    live = listen_json(out)
    assert len(live) == 1 and (live[0]["start"], live[0]["end"]) == (0.0, 0.3)
    assert_same_windows(live, classify_windows(path, checkpoint, 0.3, capsys), SAME_CODE)


def test_text_output_names_time_labels_and_speed(tmp_path, capsys):
    """The default model, plain text: one line per window with its times, labels, ms and RTF."""
    code, out, _ = run_cli(["listen", "--input", "examples/rising_chirp.wav", "--top-k", "2"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1  # the example lasts exactly one window of the default model
    assert lines[0].split()[0] == "0.00-1.29" and "rising_chirp" in lines[0] and "ms, RTF" in lines[0]


@settings(max_examples=60)
@given(
    total=st.integers(400, 3000),
    window=st.integers(400, 900),
    hop=st.integers(1, 1000),
    chunk_sizes=st.lists(st.integers(1, 700), min_size=1, max_size=20),
)
@example(total=802, window=400, hop=402, chunk_sizes=[401])  # hop > window: a write longer than the ring
def test_stream_windows_are_classify_windows(total, window, hop, chunk_sizes):
    x = np.arange(total, dtype=np.float32)
    bounds = np.cumsum(list(itertools.islice(itertools.cycle(chunk_sizes), total)))
    chunks = np.split(x, bounds[bounds < total])
    got = list(stream_windows(iter(chunks), window, hop))
    assert [s for s, _ in got] == window_starts(total, window, hop)
    for s, clip in got:
        np.testing.assert_array_equal(clip, x[s : s + window])


@settings(max_examples=60)
@given(capacity=st.integers(1, 50), sizes=st.lists(st.integers(0, 120), max_size=12), n=st.integers(0, 60))
def test_ring_buffer_keeps_the_latest_samples(capacity, sizes, n):
    ring, written = RingBuffer(capacity), np.zeros(0, np.float32)
    for size in sizes:
        chunk = np.arange(len(written), len(written) + size, dtype=np.float32)
        ring.write(chunk)
        written = np.concatenate([written, chunk])
    k = min(n, capacity, len(written))
    np.testing.assert_array_equal(ring.latest(n), written[len(written) - k :])
    assert ring.end == len(written)  # a write longer than the buffer still counts every sample


def test_pcm_reader_keeps_odd_bytes_across_reads():
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype="<i2")

    class OddReads(io.RawIOBase):  # returns 3 bytes at a time: every read splits a sample
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def read(self, n=-1):
            return self.buf.read(3)

    got = np.concatenate(list(pcm16_chunks(OddReads(samples.tobytes()))))
    np.testing.assert_array_equal(got, samples.astype(np.float32) / 32768)
    with pytest.raises(ValueError, match="middle of a 16-bit sample"):
        list(pcm16_chunks(io.BytesIO(samples.tobytes()[:-1])))


def test_streaming_resampler_equals_one_shot():
    x = signal(1.0, 44100, seed=6)[:, 0]
    stream = listen_mod.StreamResampler(44100)
    parts = [stream(x[i : i + 4410], last=i + 4410 >= len(x)) for i in range(0, len(x), 4410)]
    np.testing.assert_allclose(np.concatenate(parts), soxr.resample(x, 44100, 16000, quality="HQ"), atol=1e-6, rtol=0)


def test_without_microphone_says_how_to_use_a_file_or_stdin(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    code, _, err = run_cli(["listen"], capsys)
    assert code == 2 and "--input clip.wav" in err and "--input -" in err and err.count("\n") == 1, err


def test_microphone_through_a_stand_in_sounddevice(monkeypatch):
    """The microphone path with a stand-in module that delivers known blocks, as PortAudio's callback does."""
    x = signal(0.5, 16000, seed=7)[:, 0]
    blocks = np.array_split(x, 5)
    opened = {}

    class InputStream:
        def __init__(self, samplerate, channels, dtype, blocksize, callback):
            opened.update(samplerate=samplerate, channels=channels, dtype=dtype)
            self.callback = callback

        def __enter__(self):
            for block in blocks:
                self.callback(block[:, None].copy(), len(block), None, None)  # (frames, channels)
            return self

        def __exit__(self, *exc):
            return False

    fake = types.SimpleNamespace(InputStream=InputStream, query_devices=lambda kind: {"name": "stand-in"})
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    got = np.concatenate(list(itertools.islice(listen_mod.microphone_chunks(), len(blocks))))
    np.testing.assert_array_equal(got, x)
    assert opened == dict(samplerate=16000, channels=1, dtype="float32")
    # a device that delivers garbage is refused as a damaged file is, with the position in the stream
    blocks[3] = blocks[3].copy()
    blocks[3][2] = np.nan
    at = sum(len(b) for b in blocks[:3]) + 2
    with pytest.raises(ValueError, match=rf"^the microphone input has NaN or Inf samples \(the first at sample {at}, "):
        list(itertools.islice(listen_mod.microphone_chunks(), len(blocks)))

    def no_device(kind):
        raise ValueError("No input device matching ''")

    fake = types.SimpleNamespace(InputStream=InputStream, query_devices=no_device)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    with pytest.raises(RuntimeError, match="no microphone found.*--input"):
        listen_mod.microphone_chunks()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hop", "0"], "--hop must be a positive"),
        (["--hop", "-2"], "--hop must be a positive"),
        (["--hop", "inf"], "--hop must be a positive, finite"),
        (["--hop", "nan"], "--hop must be a positive, finite"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--input", "-", "--rate", "0"], "--rate must be a positive"),
        (["--input", "missing.wav"], "no audio file at"),
        (["--input", "-", "--realtime"], "--realtime paces a file"),
    ],
)
def test_bad_options_are_one_line(capsys, argv, message):
    code, _, err = run_cli(["listen", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_unreadable_and_too_short_input(tmp_path, capsys, monkeypatch):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF nonsense")
    code, _, err = run_cli(["listen", "--input", str(junk)], capsys)
    assert code == 2 and "cannot decode" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(np.zeros(100, "<i2").tobytes())))
    code, _, err = run_cli(["listen", "--input", "-"], capsys)
    assert code == 2 and "shorter than one 400-sample" in err
