"""`ast-min embed` and `ast_min.embed` against transformers' ASTModel with every weight randomised.

Reference: `transformers.ASTModel(output_hidden_states=True)` loaded from a random checkpoint; its
`hidden_states[k]` is layer k (0 = embeddings output), its `last_hidden_state` the default layer,
its `pooler_output` the default pooling. Two tolerances:

- same input_values into both models: float32 rounding only. Each of the tiny model's few layers
  adds relative error of order sqrt(D) * 2^-24 per matmul on O(1) activations, so 1e-5 absolute
  leaves a wide margin while still catching any wrong token, layer or LayerNorm (those move
  values by O(0.1) or more).
- audio files end to end: transformers' numpy front end and ast-min's differ by float32 FFT/log
  rounding (under 1e-4 on normalised features, see test_classify.py); a random tiny model with
  unit-gain layers and LayerNorm outputs of O(1) scale carries that at most a few times over two
  blocks, so 2e-3.
"""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import embed as embed_mod
from ast_min.cli import main as cli_main
from ast_min.embed import Embedder, embed_files, pool_tokens, select_hidden_state
from hf_reference import save_random_hf_checkpoint, tiny_config

EXACT = dict(atol=1e-5, rtol=0)
END_TO_END = dict(atol=2e-3, rtol=0)
# tiny model: 64 frames = 400 + 63 * 160 samples per window at 16 kHz
WINDOW = 400 + 63 * 160
NUM_LAYERS = tiny_config()["num_hidden_layers"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # a classification checkpoint (the usual kind): ast-min's ASTModel must read its encoder
    return save_random_hf_checkpoint(tmp_path_factory.mktemp("ckpt") / "c", tiny_config(), seed=5, preprocessor=True)


@pytest.fixture(scope="module")
def hf_model(checkpoint):
    return transformers.ASTModel.from_pretrained(checkpoint).eval()


@pytest.fixture(scope="module")
def embedder(checkpoint):
    return Embedder.load(checkpoint)


def hf_reference(hf_model, input_values, layer, pool):
    """What a transformers user writes to get the same embedding."""
    with torch.no_grad():
        out = hf_model(input_values, output_hidden_states=True)
    if layer is None and pool == "pooled":
        return out.pooler_output.numpy()
    h = (out.last_hidden_state if layer is None else out.hidden_states[layer]).numpy()
    return {"pooled": (h[:, 0] + h[:, 1]) / 2, "cls": h[:, 0], "mean": h[:, 2:].mean(1), "patches": h[:, 2:]}[pool]


def max_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@settings(max_examples=8)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    layer=st.sampled_from([None, *range(NUM_LAYERS + 1)]),
    pool=st.sampled_from(embed_mod.POOLS),
)
def test_same_features_give_transformers_hidden_states(embedder, hf_model, seed, batch, layer, pool):
    c = hf_model.config
    x = torch.randn(batch, c.max_length, c.num_mel_bins, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = pool_tokens(select_hidden_state(embedder.model, x, layer), pool).numpy()
    ref = hf_reference(hf_model, x, layer, pool)
    assert ours.shape == ref.shape
    err = max_err(ours, ref)
    assert err <= EXACT["atol"], f"layer {layer}, pool {pool}: max |ours - transformers| = {err:.3g}"


def test_layer_indices_are_transformers_hidden_states(embedder, hf_model):
    """The layers differ from each other (so picking the wrong one would be caught), and the default
    is not the unnormalised last block output."""
    c = hf_model.config
    x = torch.randn(2, c.max_length, c.num_mel_bins, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        states = [select_hidden_state(embedder.model, x, k) for k in [None, *range(NUM_LAYERS + 1)]]
    for i in range(len(states)):
        for j in range(i + 1, len(states)):
            gap = max_err(states[i], states[j])
            assert gap > 0.05, f"hidden states {i} and {j} nearly equal (max gap {gap:.3g}): cannot tell them apart"


def write_tone(path, seconds, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.3 * np.sin(2 * np.pi * (300 + 200 * seed) * t) + 0.05 * rng.standard_normal(t.shape)
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")
    return path


def test_files_end_to_end_against_transformers(tmp_path, checkpoint, hf_model):
    short = write_tone(tmp_path / "short.wav", 0.4, seed=1)  # padded to one window
    long = write_tone(tmp_path / "long.wav", 1.5, seed=2)  # three windows at a 0.3 s hop
    ours, rows = embed_files([short, long], checkpoint, window=True, hop_seconds=0.3, pool="mean", layer=1)
    # classify --window's starts, by hand: every 4800 samples while a full window fits, then one
    # flush with the end: 24000 samples -> 0, 4800, 9600, then 24000 - WINDOW
    n = 24000
    starts = [0, 4800, 9600, n - WINDOW]
    assert [(r.file, r.start) for r in rows] == [(str(short), 0.0)] + [(str(long), round(s / 16000, 3)) for s in starts]
    assert rows[-1].end == 1.5 and rows[0].end == 0.4
    wave_short = sf.read(short, dtype="float32")[0]
    wave_long = sf.read(long, dtype="float32")[0]
    clips = [wave_short] + [wave_long[s : s + WINDOW] for s in starts]
    extractor = transformers.ASTFeatureExtractor.from_pretrained(checkpoint)
    x = extractor(clips, sampling_rate=16000, return_tensors="pt").input_values
    ref = hf_reference(hf_model, x, 1, "mean")
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    err = max_err(ours, ref)
    assert err <= END_TO_END["atol"], f"max |ours - transformers| = {err:.3g}"


def test_cli_writes_array_and_sidecar(tmp_path, checkpoint, capsys):
    a = write_tone(tmp_path / "a.wav", 0.5, seed=3)
    b = write_tone(tmp_path / "b.wav", 1.0, seed=4)
    out = tmp_path / "emb" / "e.npy"
    rc = cli_main(["embed", str(a), str(b), "--out", str(out), "--checkpoint", str(checkpoint), "--pool", "patches"])
    assert rc == 0
    array = np.load(out)
    expected, _ = embed_files([a, b], checkpoint, pool="patches")
    c = tiny_config()
    num_patches = ((c["num_mel_bins"] - c["patch_size"]) // c["frequency_stride"] + 1) * (
        (c["max_length"] - c["patch_size"]) // c["time_stride"] + 1
    )
    assert array.shape == (2, num_patches, c["hidden_size"]) and array.dtype == np.float32
    np.testing.assert_array_equal(array, expected)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["files"] == [str(a), str(b)] and meta["pool"] == "patches" and meta["layer"] is None
    assert meta["shape"] == list(array.shape)
    assert [r["file"] for r in meta["rows"]] == [str(a), str(b)]
    with open(out.with_suffix(".csv")) as f:
        assert [r["file"] for r in csv.DictReader(f)] == [str(a), str(b)]
    assert "embedded its first" in capsys.readouterr().err  # b is longer than one window


def test_default_model_and_python_api_agree(tmp_path):
    """The embedded default model through the CLI equals `embed` on the same waveform by hand."""
    from ast_min.audio import load_audio

    wav = "examples/rising_chirp.wav"
    out = tmp_path / "d.npy"
    assert cli_main(["embed", wav, "--out", str(out), "--layer", "0", "--pool", "cls"]) == 0
    e = Embedder.load()
    direct = embed_mod.embed([load_audio(wav)], e.model, e.extractor, layer=0, pool="cls")
    np.testing.assert_array_equal(np.load(out), direct)
    assert direct.shape == (1, e.model.config.hidden_size)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layer", "99"], "--layer must be an integer from 0"),
        (["--layer", "-1"], "--layer must be an integer from 0"),
        (["--hop", "0.5"], "--hop only applies with --window"),
        (["--window", "--hop", "0"], "--hop must be a positive"),
        (["--window", "--hop", "-1"], "--hop must be a positive"),
        (["--window", "--hop", "inf"], "--hop must be a positive, finite"),
        (["--window", "--hop", "nan"], "--hop must be a positive, finite"),
        (["--device", "cuda:99"], "--device cuda:99"),  # on a machine without CUDA, or with fewer devices
        (["--device", "xla"], "--device xla: ast-min runs on cpu, cuda or mps"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, argv, message):
    wav = write_tone(tmp_path / "x.wav", 0.5)
    assert cli_main(["embed", str(wav), "--out", str(tmp_path / "o.npy"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.npy").exists()


def test_bad_files_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    for argv, message in [
        ([str(tmp_path / "missing.wav")], "no audio file"),
        ([str(junk)], "cannot decode"),
        ([str(write_tone(tmp_path / "t.wav", 0.01))], "shorter than one 25 ms frame"),
    ]:
        assert cli_main(["embed", *argv, "--out", str(tmp_path / "o.npy")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert cli_main(["embed", str(junk), "--out", str(tmp_path / "o.txt")]) == 2
    assert "must name a .npy file" in capsys.readouterr().err


def test_embed_loads_checkpoints_as_classify_does(tmp_path, checkpoint, monkeypatch):
    """Both commands take the checkpoint's own normalisation (checked against transformers' extractor
    reading the same preprocessor_config.json) and say the same thing when no default model exists."""
    import shutil

    from ast_min import inference
    from ast_min.classify import Classifier

    own = shutil.copytree(checkpoint, tmp_path / "own")
    settings_file = own / "preprocessor_config.json"
    settings_file.write_text(json.dumps({**json.loads(settings_file.read_text()), "mean": -2.0, "std": 1.0}))
    wave = 0.1 * np.random.default_rng(0).standard_normal(WINDOW).astype(np.float32)

    def features(extractor):
        return extractor([wave], sampling_rate=16000, return_tensors="np")["input_values"]

    reference = features(transformers.ASTFeatureExtractor.from_pretrained(own))
    _, frames, bins = reference.shape  # (1, T, F)
    audioset = features(transformers.ASTFeatureExtractor(num_mel_bins=bins, max_length=frames))
    assert np.abs(reference - audioset).max() > 0.1  # the statistics differ enough for this test to tell
    for loaded in (Embedder.load(own, device="cpu"), Classifier.load(str(own), device="cpu")):
        # the two front ends differ by float32 FFT/log rounding only (see test_classify.py)
        np.testing.assert_allclose(features(loaded.extractor), reference, atol=1e-4, rtol=0)

    monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError) as from_embed:
        Embedder.load()
    with pytest.raises(FileNotFoundError) as from_classify:
        Classifier.load(None, device="cpu")
    assert str(from_embed.value) == str(from_classify.value) and "ast-min train" in str(from_embed.value)


def test_sidecars_never_replace_the_users_files(tmp_path, capsys):
    """--out clips.npy writes clips.json and clips.csv: a clips.csv of the user's is refused, untouched;
    embed's own sidecars from an earlier run are replaced, so the same command runs twice."""
    wav = write_tone(tmp_path / "x.wav", 0.5)
    out = tmp_path / "clips.npy"
    labels = tmp_path / "clips.csv"
    labels.write_text("file,label\nx.wav,dog\n")
    assert cli_main(["embed", str(wav), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "clips.csv exists but was not written by embed" in err and err.count("\n") == 1, err
    assert labels.read_text() == "file,label\nx.wav,dog\n" and not out.exists()
    labels.unlink()
    for _ in range(2):
        assert cli_main(["embed", str(wav), "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["array"] == "clips.npy"
