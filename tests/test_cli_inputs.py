"""The command line's bad inputs: one line naming the file or option, exit status 2, never a NaN result.

Every command that reads audio (features, embed, classify, listen, export --audio) must refuse the
same damaged file with the same message, and none may write a non-finite number into a result
file or a bare NaN into its JSON. Options are bounded by what they can mean and refused while they
are parsed, before any file or model is loaded. The expected messages are written out here, from
the bounds the documentation states (one sample to four hours for --hop, int16 full scale for
samples, 1 kHz to 1 MHz for rates), not copied from the code's output.
"""

import contextlib
import io
import json
import math
import os
import re
import tempfile

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from ast_min.inference import hop_samples
from ast_min.cli import build_parser
from ast_min.cli import main as cli_main
from ast_min.data import ClipDataset
from hf_reference import save_random_hf_checkpoint, tiny_config

RATE = 16000
FOUR_HOURS = 4 * 3600
LABELS = {i: f"sound {i}" for i in range(4)}


def tone(path, seconds=1.0, rate=RATE, subtype=None):
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(path, x, rate, subtype=subtype)
    return x


def run(argv, capsys):
    code = cli_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def last_line(err):
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = tiny_config(id2label=LABELS, problem_type="multi_label_classification")
    return save_random_hf_checkpoint(tmp_path_factory.mktemp("ckpt") / "c", config, seed=5, preprocessor=True)


# ---- loud audio: one refusal, the same in every command ------------------------------------------------------------
def test_a_loud_float_file_is_refused_by_every_command_with_the_same_line(tmp_path, capsys, checkpoint):
    """A float WAV with a sample of 1e20: its power spectrum (1e40) overflows float32 into NaN features.

    Each command must name the file, the peak and where it is, and write nothing: no .npy, no
    .onnx, no JSON with NaN on stdout.
    """
    loud = tmp_path / "loud.wav"
    x = tone(tmp_path / "plain.wav", 1.0)
    x[1234] = -1e20
    sf.write(loud, x, RATE, subtype="FLOAT")
    expected = (f"'{loud}' has samples up to 1e+20 (the first beyond +-32768 at sample 1234, 0.077 s): audio must lie "
                "in [-1, 1)")
    commands = {
        "features": ["features", loud, "--out", tmp_path / "f.npy"],
        "embed": ["embed", loud, "--out", tmp_path / "e.npy", "--checkpoint", checkpoint],
        "classify": ["classify", loud, "--json", "--checkpoint", checkpoint],
        "listen": ["listen", "--input", loud, "--json", "--checkpoint", checkpoint],
        "export": ["export", "--out", tmp_path / "m.onnx", "--audio", loud, "--checkpoint", checkpoint],
    }
    for name, argv in commands.items():
        code, out, err = run(argv, capsys)
        assert code == 2, (name, err)
        assert last_line(err).startswith(f"ast-min {name}: error: {expected}"), (name, err)
        assert "Traceback" not in err and "NaN" not in out and "nan" not in out, (name, out)
        for line in out.splitlines():  # whatever listen printed before the bad block: strict JSON
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{name} printed a bare {c}"))
    assert not any(tmp_path.glob("*.npy")) and not any(tmp_path.glob("*.onnx")) and not any(tmp_path.glob(".*"))


def test_int16_scaled_float_audio_is_still_accepted(tmp_path, capsys):
    """Kaldi's convention, int16 values as floats (full scale 32768), stays accepted: the bound is just above it."""
    x = np.sign(np.sin(2 * np.pi * 440 * np.arange(8000) / RATE)).astype(np.float32) * 32768
    sf.write(tmp_path / "int16_scaled.wav", x, RATE, subtype="FLOAT")
    code, out, err = run(["features", tmp_path / "int16_scaled.wav", "--out", tmp_path / "f.npy"], capsys)
    assert code == 0, err
    assert np.isfinite(np.load(tmp_path / "f.npy")).all()


def test_listen_names_a_file_with_nan_samples(tmp_path, capsys, checkpoint):
    x = tone(tmp_path / "plain.wav", 1.0)
    x[5000] = np.nan
    sf.write(tmp_path / "nan.wav", x, RATE, subtype="FLOAT")
    code, out, err = run(["listen", "--input", tmp_path / "nan.wav", "--checkpoint", checkpoint], capsys)
    assert code == 2 and out == ""
    assert last_line(err) == (f"ast-min listen: error: '{tmp_path / 'nan.wav'}' has NaN or Inf samples (the first at "
                              "sample 5000, 0.312 s): the audio is damaged; repair it (e.g. numpy.nan_to_num) or leave it out")
    assert "clip 0" not in err


def test_listen_and_classify_refuse_the_same_implausible_header(tmp_path, capsys, checkpoint):
    """A WAV whose header claims 1 Hz: 100 samples would be streamed as 100 seconds (154 windows)."""
    sf.write(tmp_path / "one_hz.wav", np.zeros(100, np.float32), 1)
    said = {}
    for name, argv in {"listen": ["listen", "--input", tmp_path / "one_hz.wav"],
                       "classify": ["classify", tmp_path / "one_hz.wav"]}.items():
        code, out, err = run([*argv, "--checkpoint", checkpoint], capsys)
        assert code == 2 and out == "", (name, out)
        said[name] = last_line(err).removeprefix(f"ast-min {name}: error: ")
    assert said["listen"] == said["classify"], said
    assert said["listen"].startswith(f"'{tmp_path / 'one_hz.wav'}' claims a sampling rate of 1 Hz, outside [1000, 1000000] Hz")


# ---- options: bounded, refused while parsed ------------------------------------------------------------------------
HOP_BOUNDS = (1 / RATE, FOUR_HOURS)  # one sample .. the longest audio ast-min reads
MAX_FRAMES = 1 + (FOUR_HOURS * RATE - 400) // 160  # frames of four hours of 16 kHz audio
# (command, the arguments before the option, the option, its attribute, its bounds, how to read it)
DURATION_OPTIONS = [
    ("classify", ["a.wav", "--window"], "--hop", "hop", HOP_BOUNDS, float),
    ("embed", ["a.wav", "--out", "e.npy", "--window"], "--hop", "hop", HOP_BOUNDS, float),
    ("listen", ["--input", "-"], "--hop", "hop", HOP_BOUNDS, float),
    ("features", ["a.wav"], "--max-length", "max_length", (1, MAX_FRAMES), int),
    ("train", [], "--max-length", "max_length", (1, MAX_FRAMES), int),
    ("listen", ["--input", "-"], "--rate", "rate", (1000, 1_000_000), int),
]
extremes = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=1e-6, max_value=1e6).map(repr),
    st.integers(-(10**40), 10**40).map(str),
    st.integers(0, 2 * MAX_FRAMES).map(str),
    st.sampled_from(["inf", "-inf", "nan", "1e308", "-1e308", "1e-320", "0", "-0", "5e-324", "1e400", "abc", "",
                     "0x10", "1_000", "６", "14400", "14400.0000001", "0.0000625", "0.00006249"]),
)


def in_bounds(text, bounds, kind) -> bool:
    """The documented rule, restated independently: the text is a number of the option's kind, within the bounds."""
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        return False
    return math.isfinite(value) and bounds[0] <= value <= bounds[1]


@given(text=extremes)
@example(text="1e308")  # the value that once ended in OverflowError: cannot convert float infinity to integer
@settings(max_examples=300)
def test_duration_and_rate_options_are_bounded_or_refused_in_one_line(text):
    for command, before, option, attribute, bounds, kind in DURATION_OPTIONS:
        parser = build_parser([command])
        try:
            args = parser.parse_args([command, *before, f"{option}={text}"])
        except SystemExit as e:
            assert e.code == 2
            assert not in_bounds(text, bounds, kind), f"{command} {option}={text!r} is within bounds but refused"
            continue
        assert in_bounds(text, bounds, kind), f"{command} {option}={text!r} was accepted"
        value = getattr(args, attribute)
        if option == "--hop":  # the result: a whole number of samples, the nearest to the seconds asked for
            samples = hop_samples(1024, value)
            assert isinstance(samples, int) and 1 <= samples <= FOUR_HOURS * RATE
            assert abs(samples - value * RATE) <= 0.5 or samples == 1


@pytest.mark.parametrize("command, before, option", [(c, b, o) for c, b, o, *_ in DURATION_OPTIONS])
@pytest.mark.parametrize("text", ["1e308", "nan", "-inf", "0", "abc"])
def test_a_refused_option_is_one_line_naming_it(capsys, command, before, option, text):
    code, out, err = run([command, *before, f"{option}={text}"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"ast-min {command}: error: ") and option in err and err.rstrip().endswith(f"(see ast-min {command} --help)")


def test_the_bound_messages_say_what_the_option_can_mean(capsys):
    code, _, err = run(["classify", "a.wav", "--window", "--hop", "1e308"], capsys)
    assert code == 2 and err == (
        "ast-min classify: error: --hop must be a positive, finite number of seconds from 1/16000 (one sample) to "
        "14400 (4 h, the longest audio ast-min reads), got 1e+308 (see ast-min classify --help)\n")
    code, _, err = run(["features", "a.wav", "--max-length", str(10**12)], capsys)
    assert code == 2 and err.startswith(f"ast-min features: error: --max-length must be a number of frames from 1 to "
                                        f"{MAX_FRAMES} ")
    code, out, err = run(["train", "--max-length", str(10**12)], capsys)  # refused while parsed: nothing trains
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(
        f"ast-min train: error: --max-length must be a number of frames from 1 to {MAX_FRAMES} "), err
    code, _, err = run(["listen", "--input", "-", "--rate", "1"], capsys)
    assert code == 2 and err.startswith("ast-min listen: error: --rate must be a positive number of Hz from 1000 to "
                                        "1000000 (the rates ast-min reads from files), got 1")
    code, _, err = run(["classify", "a.wav", "--no-such-option"], capsys)
    assert code == 2 and err == ("ast-min classify: error: unrecognized arguments: --no-such-option "
                                 "(see ast-min classify --help)\n")


def test_the_longest_hop_classifies_a_short_file(tmp_path, capsys, checkpoint):
    """--hop at its bound is a result, not an error: the first window and the one flush with the end."""
    tone(tmp_path / "a.wav", 1.0)
    code, out, err = run(["classify", tmp_path / "a.wav", "--window", "--hop", FOUR_HOURS, "--json",
                          "--checkpoint", checkpoint], capsys)
    assert code == 0, err
    window = 400 + 63 * 160  # the tiny model's 64 frames
    starts = [w["start"] for w in json.loads(out)[0]["windows"]]
    assert starts == [0.0, round((RATE - window) / RATE, 3)]


# ---- debugging --------------------------------------------------------------------------------------------------------
def test_ast_min_debug_gives_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AST_MIN_DEBUG", raising=False)
    code, _, err = run(["features", tmp_path / "missing.wav"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no audio file at" in err
    monkeypatch.setenv("AST_MIN_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="no audio file at"):
        cli_main(["features", str(tmp_path / "missing.wav")])
    with pytest.raises(FileNotFoundError, match="no audio file at"):  # classify's per-file catch too
        cli_main(["classify", str(tmp_path / "missing.wav")])


# ---- smaller ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, name", [("embed", "e.npy"), ("export", "m.onnx"), ("features", "f.npy")])
def test_an_out_that_is_a_folder_is_refused_before_any_work(tmp_path, capsys, command, name):
    tone(tmp_path / "a.wav", 0.5)
    folder = tmp_path / name
    folder.mkdir()
    argv = {"embed": ["embed", tmp_path / "a.wav", "--out", folder], "export": ["export", "--out", folder],
            "features": ["features", tmp_path / "a.wav", "--out", folder]}[command]
    code, out, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"--out '{folder}' is a directory: name a file, e.g. {folder / ''}" in err, err
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", name]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_manifest_that_is_not_utf8_is_named(tmp_path, capsys, suffix):
    manifest = tmp_path / f"train{suffix}"
    manifest.write_bytes("file,labels\ncaf\u00e9.wav,dog\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^manifest '{re.escape(str(manifest))}' is not UTF-8 text \(.*\): save it as UTF-8$"):
        ClipDataset.from_manifest(manifest)
    code, _, err = run(["train", "--data", manifest, "--eval-data", manifest, "--output-dir", tmp_path / "run"], capsys)
    assert code == 2 and err.count("\n") == 1 and f"manifest '{manifest}' is not UTF-8 text" in err, err


# ---- no non-finite number in any result ---------------------------------------------------------------------------------
def overflowing(tmp_path, pattern, name="big"):
    """A checkpoint whose finite weights make the activations overflow: the tensors matching `pattern` set to +-3e38."""
    ckpt = save_random_hf_checkpoint(tmp_path / name, tiny_config(id2label=LABELS), seed=6)
    weights = load_file(ckpt / "model.safetensors")
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in weights if re.search(pattern, k)]:
        weights[key] = torch.sign(torch.randn(weights[key].shape, generator=generator)) * 3e38
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    return ckpt


def test_listen_never_prints_nan_scores(tmp_path, capsys):
    ckpt = overflowing(tmp_path, r"^classifier\.dense\.weight$")
    tone(tmp_path / "a.wav", 1.0)
    code, out, err = run(["listen", "--input", tmp_path / "a.wav", "--json", "--checkpoint", ckpt], capsys)
    assert code == 2 and out == "", out
    assert last_line(err).startswith(f"ast-min listen: error: the model gave NaN or Inf scores for '{tmp_path / 'a.wav'}' "
                                     "at 0.00 s: its weights are not finite or make the logits overflow"), err


def test_embed_never_saves_nan_embeddings(tmp_path, capsys):
    ckpt = overflowing(tmp_path, r"\.layernorm\.weight$")  # the final LayerNorm's scale: last_hidden_state overflows
    tone(tmp_path / "a.wav", 1.0)
    code, out, err = run(["embed", tmp_path / "a.wav", "--out", tmp_path / "e.npy", "--checkpoint", ckpt], capsys)
    assert code == 2 and not (tmp_path / "e.npy").exists()
    assert last_line(err).startswith(f"ast-min embed: error: the model gave NaN or Inf embeddings for "
                                     f"'{tmp_path / 'a.wav'}' (0.00-0.66 s)"), err


def test_export_blames_the_model_not_onnx_for_non_finite_logits(tmp_path, capsys):
    ckpt = overflowing(tmp_path, r"^classifier\.dense\.weight$")
    code, out, err = run(["export", "--out", tmp_path / "m.onnx", "--checkpoint", ckpt], capsys)
    assert code == 2 and not (tmp_path / "m.onnx").exists() and not any(tmp_path.glob(".m.onnx*"))
    assert last_line(err).startswith("ast-min export: error: the model's own logits are NaN or Inf on the random, "
                                     "batch 1 inputs"), err
    assert "differ from torch" not in err


def test_features_never_saves_non_finite_features(tmp_path, capsys, monkeypatch):
    """The last guard before the file: whatever went wrong upstream, a NaN is never written."""
    from ast_min import extractor

    real = extractor.ASTFeatureExtractor.__call__

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        out["input_values"][-1, 3, 5] = np.nan
        return out

    monkeypatch.setattr(extractor.ASTFeatureExtractor, "__call__", poisoned)
    tone(tmp_path / "a.wav", 0.5)
    tone(tmp_path / "b.wav", 0.5)
    code, out, err = run(["features", tmp_path / "a.wav", tmp_path / "b.wav", "--out", tmp_path / "f.npy"], capsys)
    assert code == 2 and not (tmp_path / "f.npy").exists()
    assert f"the features of '{tmp_path / 'b.wav'}' came out NaN or Inf" in err and "a.wav" not in err, err


@given(mean=st.floats(-1e39, 1e39), std=st.floats(1e-45, 1e39), loud=st.booleans())
@example(mean=-3e38, std=0.1, loud=True)
@example(mean=0.0, std=1e-40, loud=False)
@settings(max_examples=60)
def test_normalisation_options_are_refused_by_name_or_give_finite_features(mean, std, loud):
    """Either --mean/--std are refused by name, or the features of the loudest and the quietest audio are finite."""
    with tempfile.TemporaryDirectory() as root:
        path, out = os.path.join(root, "a.wav"), os.path.join(root, "f.npy")
        square = np.sign(np.sin(2 * np.pi * 440 * np.arange(4000) / RATE)).astype(np.float32)
        sf.write(path, square * (32768.0 if loud else 0.0), RATE, subtype="FLOAT")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli_main(["features", path, f"--mean={mean!r}", f"--std={std!r}", "--out", out])
        if code == 0:
            assert np.isfinite(np.load(out)).all()
        else:
            assert code == 2 and "--mean" in err.getvalue() and "--std" in err.getvalue(), err.getvalue()
