"""`ast-min classify` end to end, on audio files written here, against a transformers pipeline.

Reference: the file read with soundfile, channels averaged, resampled with soxr when needed (the
steps written out here), featurised by `transformers.ASTFeatureExtractor` with the checkpoint's
normalisation, classified by `transformers.ASTForAudioClassification`, sigmoid/softmax applied
here. Tolerance 2e-3 on probabilities: transformers' numpy front end and ast-min's differ only by
float32 rounding in the FFT and the log (relative errors of a few hundred float32 eps, ~1e-5, on
features of order 1), a probability moves by at most 1/4 of a logit change, and a tiny random
model's logits change by at most the size of its feature error times its weights' gain (of order 1).
A wrong statistic, window or resampler moves the scores by far more (the normalisation test below
asserts that the statistics alone move them by over ten times the tolerance).
"""

import json

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import classify, inference
from ast_min.cli import main as cli_main
from ast_min.inference import window_starts
from hf_reference import save_random_hf_checkpoint, tiny_config

TOL = dict(atol=2e-3, rtol=0)
LABELS = {i: f"sound {i}" for i in range(6)}
# tiny model: 64 frames = 400 + 63 * 160 samples = 0.655 s per window at 16 kHz
WINDOW = 400 + 63 * 160


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    multi = save_random_hf_checkpoint(
        root / "multi", tiny_config(id2label=LABELS, problem_type="multi_label_classification"), seed=1, preprocessor=True
    )
    single = save_random_hf_checkpoint(root / "single", tiny_config(id2label=LABELS), seed=2)  # softmax, AudioSet stats
    custom = save_random_hf_checkpoint(root / "custom", tiny_config(id2label=LABELS), seed=3)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=64, mean=-6.6, std=5.4).save_pretrained(custom)
    return {"multi": multi, "single": single, "custom": custom}


def write(path, seconds, rate=16000, channels=1, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    sf.write(path, tone.astype(np.float32) if channels > 1 else tone[:, 0].astype(np.float32), rate, **kwargs)
    return path


def reference_scores(checkpoint, waveforms, activation, audioset_stats=False):
    """transformers' extractor and model on 16 kHz mono waveforms -> (W, C) probabilities."""
    model = transformers.ASTForAudioClassification.from_pretrained(checkpoint).eval()
    if (checkpoint / "preprocessor_config.json").is_file() and not audioset_stats:
        extractor = transformers.ASTFeatureExtractor.from_pretrained(checkpoint)
    else:  # AudioSet statistics
        extractor = None
    return model_scores(model, waveforms, activation, extractor)


def model_scores(model, waveforms, activation, extractor=None):
    """A transformers model on 16 kHz mono waveforms -> (W, C) probabilities (AudioSet statistics by default)."""
    if extractor is None:
        extractor = transformers.ASTFeatureExtractor(num_mel_bins=model.config.num_mel_bins, max_length=model.config.max_length)
    feats = extractor(list(waveforms), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        logits = model(feats).logits
    return (logits.sigmoid() if activation == "sigmoid" else logits.softmax(-1)).numpy()


def read_16k_mono(path):
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000, quality="HQ").astype(np.float32)


def run_json(capsys, *argv):
    code = cli_main(["classify", *map(str, argv), "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def scores_of(entry):
    return {p["label"]: p["score"] for p in entry["predictions"]}


# ---- predictions equal the reference -----------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, channels, fmt",
    [(16000, 1, "wav"), (44100, 2, "flac"), (8000, 1, "ogg"), (48000, 2, "wav"), (22050, 1, "flac")],
)
def test_scores_equal_a_transformers_pipeline(tmp_path, capsys, checkpoints, rate, channels, fmt):
    path = write(tmp_path / f"clip.{fmt}", 0.5, rate, channels, seed=rate)
    code, out, err = run_json(capsys, path, "--checkpoint", checkpoints["multi"], "--top-k", "6")
    assert code == 0, err
    (entry,) = out
    assert entry["file"] == str(path) and entry["model"] == str(checkpoints["multi"])
    ref = reference_scores(checkpoints["multi"], [read_16k_mono(path)], "sigmoid")[0]
    got = scores_of(entry)
    np.testing.assert_allclose([got[LABELS[i]] for i in range(6)], ref, **TOL)


def test_single_label_heads_use_softmax_and_list_scores_descending(tmp_path, capsys, checkpoints):
    path = write(tmp_path / "a.wav", 0.4)
    code, out, _ = run_json(capsys, path, "--checkpoint", checkpoints["single"], "--top-k", "6")
    assert code == 0
    scores = [p["score"] for p in out[0]["predictions"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-5)
    ref = reference_scores(checkpoints["single"], [read_16k_mono(path)], "softmax")[0]
    np.testing.assert_allclose([scores_of(out[0])[LABELS[i]] for i in range(6)], ref, **TOL)


def test_the_checkpoints_preprocessor_config_sets_the_normalisation(tmp_path, capsys, checkpoints):
    path = write(tmp_path / "a.wav", 0.4, seed=5)
    _, out, _ = run_json(capsys, path, "--checkpoint", checkpoints["custom"], "--top-k", "6")
    ref = reference_scores(checkpoints["custom"], [read_16k_mono(path)], "softmax")[0]  # mean -6.6, std 5.4
    np.testing.assert_allclose([scores_of(out[0])[LABELS[i]] for i in range(6)], ref, **TOL)
    audioset = reference_scores(checkpoints["custom"], [read_16k_mono(path)], "softmax", audioset_stats=True)[0]
    assert np.abs(audioset - ref).max() > 10 * TOL["atol"]  # the statistics matter: this test can tell


def test_top_k_and_several_files_in_order(tmp_path, capsys, checkpoints):
    paths = [write(tmp_path / f"{i}.wav", 0.3 + 0.1 * i, seed=i) for i in range(3)]
    code, out, _ = run_json(capsys, *paths, "--checkpoint", checkpoints["multi"], "--top-k", "2")
    assert code == 0 and [e["file"] for e in out] == list(map(str, paths))
    assert all(len(e["predictions"]) == 2 for e in out)


def test_text_output_names_file_model_and_labels(tmp_path, capsys, checkpoints):
    path = write(tmp_path / "a.wav", 0.3)
    assert cli_main(["classify", str(path), "--checkpoint", str(checkpoints["multi"]), "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and str(checkpoints["multi"]) in out
    assert sum(label in out for label in LABELS.values()) == 3


# ---- short and long files ------------------------------------------------------------------------


def test_a_single_frame_is_enough_and_less_is_refused(tmp_path, capsys, checkpoints):
    noise = (0.1 * np.random.default_rng(11).standard_normal(400)).astype(np.float32)  # a spectrum, unlike a constant
    one_frame = tmp_path / "frame.wav"
    sf.write(one_frame, noise, 16000, subtype="FLOAT")
    too_short = tmp_path / "short.wav"
    sf.write(too_short, noise[:399], 16000, subtype="FLOAT")
    code, out, err = run_json(capsys, too_short, one_frame, "--checkpoint", checkpoints["multi"])
    assert code == 2  # a failure is reported ...
    assert "short.wav" in err and "shorter than one 25 ms frame" in err
    assert [e["file"] for e in out] == [str(one_frame)]  # ... and the other file still classified
    ref = reference_scores(checkpoints["multi"], [noise], "sigmoid")[0]
    np.testing.assert_allclose(sorted(scores_of(out[0]).values(), reverse=True), sorted(ref, reverse=True)[:5], **TOL)


def test_long_files_use_the_first_window_and_say_so(tmp_path, capsys, checkpoints):
    path = write(tmp_path / "long.wav", 3.0, seed=7)
    code, out, err = run_json(capsys, path, "--checkpoint", checkpoints["multi"], "--top-k", "6")
    assert code == 0 and "classified its first 0.66 s" in err and "--window" in err
    first = read_16k_mono(path)[:WINDOW]
    ref = reference_scores(checkpoints["multi"], [first], "sigmoid")[0]
    np.testing.assert_allclose([scores_of(out[0])[LABELS[i]] for i in range(6)], ref, **TOL)


@pytest.mark.parametrize("hop, pool", [(None, "auto"), ("0.25", "mean"), ("1.0", "max")])
def test_window_reports_each_window_and_pools_them(tmp_path, capsys, checkpoints, hop, pool):
    path = write(tmp_path / "long.flac", 2.3, rate=44100, channels=2, seed=8)
    argv = [path, "--checkpoint", checkpoints["multi"], "--top-k", "6", "--window", "--pool", pool]
    code, out, err = run_json(capsys, *argv, *(["--hop", hop] if hop else []))
    assert code == 0, err
    wave = read_16k_mono(path)
    hop_samples = WINDOW // 2 if hop is None else int(float(hop) * 16000)
    starts = list(range(0, len(wave) - WINDOW + 1, hop_samples))
    if starts[-1] + WINDOW < len(wave):
        starts.append(len(wave) - WINDOW)  # the tail gets a window flush with the end
    entry = out[0]
    assert [w["start"] for w in entry["windows"]] == [round(s / 16000, 3) for s in starts]
    ref = reference_scores(checkpoints["multi"], [wave[s : s + WINDOW] for s in starts], "sigmoid")  # (W, C)
    for window, row in zip(entry["windows"], ref):
        np.testing.assert_allclose([scores_of(window)[LABELS[i]] for i in range(6)], row, **TOL)
    pooled = ref.mean(0) if pool == "mean" else ref.max(0)  # auto = max for a multi-label head
    assert entry["pool"] == ("max" if pool == "auto" else pool)
    np.testing.assert_allclose([scores_of(entry)[LABELS[i]] for i in range(6)], pooled, **TOL)


@settings(max_examples=200)
@given(n=st.integers(1, 5000), window=st.integers(1, 600), hop=st.integers(1, 700))
def test_window_starts_cover_the_file_with_full_windows(n, window, hop):
    starts = window_starts(n, window, hop)
    if n <= window:
        assert starts == [0]
        return
    assert starts[0] == 0 and starts[-1] + window == n  # from the start, and the tail always classified
    assert all(0 <= s <= n - window for s in starts)  # every window is full
    assert all(b - a <= hop for a, b in zip(starts, starts[1:])) and starts == sorted(set(starts))
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all() or hop > window  # with hop > window gaps are the user's choice


# ---- models ----------------------------------------------------------------------------------------


def test_default_model_is_used_and_named_when_installed(tmp_path, capsys, checkpoints, monkeypatch):
    monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", checkpoints["multi"])
    path = write(tmp_path / "a.wav", 0.3)
    code, out, _ = run_json(capsys, path)
    assert code == 0 and "default model" in out[0]["model"]


def test_no_checkpoint_and_no_default_model_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    path = write(tmp_path / "a.wav", 0.3)
    code, _, err = run_json(capsys, path)
    assert code == 2 and "no default model" in err and "--checkpoint" in err and "ast-min train" in err


def test_original_pth_with_a_labels_file(tmp_path, capsys, checkpoints):
    from ast_min import ASTConfig, ASTForAudioClassification
    from test_checkpoint import to_original_format

    hf = transformers.ASTForAudioClassification.from_pretrained(checkpoints["multi"])
    torch.save(to_original_format(hf), tmp_path / "m.pth")
    names = [f"class {i}" for i in range(6)]
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n" + "".join(f'{i},/m/{i},"{n}"\n' for i, n in enumerate(names)))
    # the .pth carries no architecture: this one is not AST-Base, so the CLI cannot load it ...
    code, _, err = run_json(capsys, write(tmp_path / "a.wav", 0.3), "--checkpoint", tmp_path / "m.pth")
    assert code == 2 and "config=ASTConfig" in err
    # ... while the library can, given the config; the CLI reads AST-Base .pth files (tested in test_checkpoint)
    model = ASTForAudioClassification.from_pretrained(tmp_path / "m.pth", config=ASTConfig(**tiny_config(num_labels=6)))
    assert model.config.num_labels == 6
    assert classify.read_labels(tmp_path / "labels.csv", 6) == dict(enumerate(names))
    (tmp_path / "labels.txt").write_text("\n".join(names))
    assert classify.read_labels(tmp_path / "labels.txt", 6) == dict(enumerate(names))
    with pytest.raises(ValueError, match="names 6 labels but the model has 5"):
        classify.read_labels(tmp_path / "labels.txt", 5)


def test_original_pth_with_ast_base_geometry_and_labels_equals_transformers(tmp_path, capsys):
    """The CLI on an original-repository .pth: no config, so AST-Base geometry (12 layers and heads,
    1024 x 128 input) with the width and label count read off the tensors; --labels names the classes."""
    from hf_reference import random_hf_model
    from test_checkpoint import to_original_format

    cfg = dict(hidden_size=24, intermediate_size=24, num_hidden_layers=12, num_attention_heads=12, num_labels=3)
    hf = random_hf_model(seed=21, **cfg)  # transformers, every weight random
    torch.save(to_original_format(hf), tmp_path / "audioset.pth")  # timm names, fused qkv (test_checkpoint's table)
    names = ["dog bark", "siren", "speech"]
    (tmp_path / "names.txt").write_text("\n".join(names))
    path = write(tmp_path / "a.wav", 0.7, seed=21)
    code, out, err = run_json(capsys, path, "--checkpoint", tmp_path / "audioset.pth", "--labels", tmp_path / "names.txt",
                              "--top-k", "3")  # fmt: skip
    assert code == 0, err
    got = scores_of(out[0])
    assert set(got) == set(names)
    ref = model_scores(hf, [read_16k_mono(path)], "softmax")[0]  # 3 unnamed classes: single-label, softmax
    np.testing.assert_allclose([got[n] for n in names], ref, **TOL)


def test_labels_option_renames_the_output(tmp_path, capsys, checkpoints):
    (tmp_path / "names.json").write_text(json.dumps([f"n{i}" for i in range(6)]))
    code, out, _ = run_json(capsys, write(tmp_path / "a.wav", 0.3), "--checkpoint", checkpoints["multi"],
                            "--labels", tmp_path / "names.json", "--top-k", "6")  # fmt: skip
    assert code == 0 and set(scores_of(out[0])) == {f"n{i}" for i in range(6)}


# ---- bad input ---------------------------------------------------------------------------------------


def test_missing_and_undecodable_files_are_reported_per_file(tmp_path, capsys, checkpoints):
    good = write(tmp_path / "good.wav", 0.3)
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio")
    code, out, err = run_json(capsys, tmp_path / "missing.wav", fake, good, "--checkpoint", checkpoints["multi"])
    assert code == 2
    assert "no audio file at" in err and "missing.wav" in err
    assert "cannot decode" in err and "fake.wav" in err
    assert [e["file"] for e in out] == [str(good)]


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "corrupt"])
def test_bad_checkpoints_exit_2_with_a_message(tmp_path, capsys, checkpoints, kind):
    ckpt = tmp_path / "ckpt"
    if kind == "empty_dir":
        ckpt.mkdir()
    elif kind == "corrupt":
        save_random_hf_checkpoint(ckpt, tiny_config(), seed=4)
        (ckpt / "model.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = run_json(capsys, write(tmp_path / "a.wav", 0.3), "--checkpoint", ckpt)
    assert code == 2
    expected = {"missing": "no checkpoint at", "empty_dir": "no config.json", "corrupt": "not a readable safetensors"}
    assert expected[kind] in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [(["--top-k", "0"], "--top-k"), (["--hop", "0"], "--hop"),
                                           (["--hop", "inf"], "--hop must be a positive, finite"),
                                           (["--hop", "nan"], "--hop must be a positive, finite"),
                                           (["--device", "tpu9"], "--device"),
                                           (["--device", "cuda:99"], "--device cuda:99"),
                                           (["--device", "xla"], "--device xla")])  # fmt: skip
def test_bad_options_are_explained(tmp_path, capsys, checkpoints, argv, message):
    code, _, err = run_json(capsys, write(tmp_path / "a.wav", 0.3), "--checkpoint", checkpoints["multi"], *argv)
    assert code == 2 and message in err


def test_cuda_on_a_machine_without_it_is_one_line(tmp_path, capsys, checkpoints, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_json(capsys, write(tmp_path / "a.wav", 0.3), "--checkpoint", checkpoints["multi"], "--device", "cuda")
    assert code == 2 and "--device cuda: this machine has no CUDA device" in err and "Traceback" not in err


def test_non_finite_scores_are_an_error_never_bare_nan_json(tmp_path, capsys, checkpoints):
    # Finite weights whose logits overflow float32 (3e38 * a feature of magnitude > 1 = inf): the
    # softmax of +inf and -inf logits is NaN. A checkpoint's weights can all be finite and still do this.
    ckpt = save_random_hf_checkpoint(tmp_path / "big", tiny_config(id2label=LABELS), seed=6)
    from safetensors.torch import load_file, save_file

    weights = load_file(ckpt / "model.safetensors")
    head = next(k for k in weights if k.endswith("dense.weight") and weights[k].shape[0] == len(LABELS))
    weights[head] = torch.sign(torch.randn(weights[head].shape, generator=torch.Generator().manual_seed(0))) * 3e38
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    good = write(tmp_path / "a.wav", 0.4)
    code = cli_main(["classify", str(good), "--checkpoint", str(ckpt), "--json"])
    out = capsys.readouterr()

    def refuse(constant):
        raise AssertionError(f"bare {constant} in the JSON output")

    json.loads(out.out, parse_constant=refuse)  # strict JSON, whatever it holds
    assert code == 2 and "a.wav" in out.err and ("NaN" in out.err or "finite" in out.err), out.err


def test_labels_file_errors_name_the_file(tmp_path, capsys, checkpoints):
    import os

    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "num.json").write_text("3")
    for name in ("bad.json", "num.json"):
        with pytest.raises(ValueError, match=f"cannot read label names from .*{name}"):
            classify.read_labels(tmp_path / name, 6)
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(ValueError, match="not a regular file"):  # opening it would block until a writer came
        classify.read_labels(tmp_path / "pipe.txt", 6)


def test_a_warning_is_one_line_from_ast_min(tmp_path, checkpoints):
    """In a real process (pytest would capture the warning): a WAV cut short of its header is
    classified, with a one-line warning that reads as ast-min's, not as a Python source location."""
    import os
    import subprocess
    import sys

    data = write(tmp_path / "whole.wav", 0.5).read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "ast_min.cli", "classify", str(tmp_path / "cut.wav"), "--checkpoint", str(checkpoints["multi"])]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ast-min classify: warning: " in done.stderr and "cut short" in done.stderr, done.stderr
    assert "UserWarning" not in done.stderr and ".py:" not in done.stderr, done.stderr


def test_ctrl_c_is_one_line_and_status_130(tmp_path, capsys, checkpoints, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(classify.Classifier, "classify_file", interrupted)
    assert cli_main(["classify", str(write(tmp_path / "a.wav", 0.3)), "--checkpoint", str(checkpoints["multi"])]) == 130
    assert capsys.readouterr().err.strip() == "ast-min classify: interrupted"


def test_a_labels_csv_is_read_as_training_reads_it(tmp_path):
    """--labels with a class_labels_indices.csv goes through the trainer's reader: an index column with a
    gap would shift every later name onto the wrong class, so it is refused, as a missing column is."""
    (tmp_path / "gap.csv").write_text("index,mid,display_name\n0,/m/a,dog\n2,/m/b,cat\n")
    with pytest.raises(ValueError, match="the index column must run 0, 1, 2"):
        classify.read_labels(tmp_path / "gap.csv", 2)
    (tmp_path / "bare.csv").write_text("index,name\n0,dog\n")
    with pytest.raises(ValueError, match="must have the columns index,mid,display_name"):
        classify.read_labels(tmp_path / "bare.csv", 1)
