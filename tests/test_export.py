"""`ast-min export --format onnx` against independent references: onnx's checker, onnxruntime, and
transformers' ASTForAudioClassification loaded from the same checkpoint (every weight randomised for
the AST-Base-shaped model; the embedded default model's own weights for the other).

Tolerance: the exported graph and transformers compute in float32 with different summation orders;
`ast_min.export.logits_tolerance` derives the allowed |logit difference| from the config (about
sqrt(6 N + 1) * sqrt(K) float32 roundoffs per unit of logit scale, times ten). These tests also
assert that this tolerance is tight (under 1e-3 of the logits' scale for these small models), so a
loose bound cannot hide a wrong export, and that the refusal fires for a perturbation past it.
"""

import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import soundfile as sf
import torch
import transformers

from ast_min import export as export_mod
from ast_min.inference import DEFAULT_MODEL_DIR
from ast_min.cli import main as cli_main
from ast_min.export import ExportError, check_parity, logits_tolerance
from hf_reference import save_random_hf_checkpoint, tiny_config

EXAMPLES = ["examples/harmonic_stack.wav", "examples/rising_chirp.wav"]
# AST-Base's structure (128 mel bins, 16 x 16 patches at stride 10, Dh = 64, MLP 4 D, 527
# multi-label AudioSet classes) at a fraction of its width, depth and length
BASE_SHAPED = dict(
    hidden_size=128, num_attention_heads=2, intermediate_size=512, num_hidden_layers=2, patch_size=16,
    frequency_stride=10, time_stride=10, num_mel_bins=128, max_length=192, num_labels=527,
    problem_type="multi_label_classification",
)  # fmt: skip


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def hf_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).logits.numpy()


def assert_graph_is_plain_onnx_with_dynamic_batch(path, config):
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value, f"batch dimension is not symbolic: {dims[0]}"
    assert [d.dim_value for d in dims[1:]] == [config.max_length, config.num_mel_bins]
    domains = {node.domain for node in model.graph.node}
    assert domains <= {"", "ai.onnx"}, f"custom operator domains in the graph: {domains}"


def check_against(reference, path, inputs, config):
    """config: ast-min's ASTConfig of the exported model (for the tolerance)."""
    sess = session(path)
    for name, x in inputs.items():
        expected = hf_logits(reference, x)
        got = sess.run(None, {"input_values": x})[0]
        scale = float(np.abs(expected).max())
        tol = logits_tolerance(config, scale)
        assert tol < 1e-3 * max(1.0, scale), f"tolerance {tol:.3g} is loose for logits of scale {scale:.3g}"
        err = float(np.abs(got.astype(np.float64) - expected).max())
        assert got.shape == expected.shape and err <= tol, f"{name}: max |onnx - transformers| = {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "default.onnx"
    assert cli_main(["export", "--format", "onnx", "--out", str(out), "--audio", *EXAMPLES]) == 0
    return out


def test_default_model_export_matches_transformers(default_export, capsys):
    reference = transformers.ASTForAudioClassification.from_pretrained(DEFAULT_MODEL_DIR).eval()
    config = reference.config
    assert_graph_is_plain_onnx_with_dynamic_batch(default_export, config)
    assert not list(default_export.parent.glob("*.unverified.onnx")), "the staging file was left behind"
    extractor = transformers.ASTFeatureExtractor.from_pretrained(DEFAULT_MODEL_DIR)
    from ast_min.audio import load_audio

    clips = [load_audio(f) for f in EXAMPLES]
    rng = np.random.default_rng(1)
    inputs = {
        f"examples, batch {b}": extractor([clips[i % 2] for i in range(b)], sampling_rate=16000, return_tensors="np")[
            "input_values"
        ]
        for b in (1, 2, 5)  # 2 and 5: batch sizes neither the trace nor the export's own check used
    }
    inputs["random, batch 4"] = rng.standard_normal((4, config.max_length, config.num_mel_bins), dtype=np.float32)
    check_against(reference, default_export, inputs, export_mod.load_classifier(None)[0].config)


def test_ast_base_shaped_random_checkpoint(tmp_path):
    ckpt = save_random_hf_checkpoint(tmp_path / "base", BASE_SHAPED, seed=7)
    model, extractor, _ = export_mod.load_classifier(str(ckpt))
    out = tmp_path / "base.onnx"
    report = export_mod.export_onnx(model, out, extractor=extractor)
    assert set(report.errors) == {f"{kind}, batch {b}" for kind in ("random", "audio features") for b in (1, 3)}
    reference = transformers.ASTForAudioClassification.from_pretrained(ckpt).eval()
    assert_graph_is_plain_onnx_with_dynamic_batch(out, reference.config)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, BASE_SHAPED["max_length"], BASE_SHAPED["num_mel_bins"]), dtype=np.float32)
    check_against(reference, out, {"random, batch 3": x}, model.config)


class Perturbed:
    """An onnxruntime session whose first logit is shifted by `delta`."""

    def __init__(self, inner, delta):
        self.inner, self.delta = inner, delta

    def run(self, names, feeds):
        (logits,) = self.inner.run(names, feeds)
        logits = logits.copy()
        logits[0, 0] += self.delta
        return [logits]


def test_parity_check_threshold(default_export):
    model, extractor, _ = export_mod.load_classifier(None)
    inputs = export_mod.check_inputs(model.config, extractor=extractor)
    report = check_parity(model, session(default_export), inputs)
    tol = report.tolerance
    check_parity(model, Perturbed(session(default_export), tol / 2), inputs)  # within: accepted
    with pytest.raises(ExportError, match="beyond the float32 rounding tolerance"):
        check_parity(model, Perturbed(session(default_export), 2 * tol), inputs)


def test_cli_refuses_and_deletes_a_wrong_export(tmp_path, monkeypatch, capsys):
    ckpt = save_random_hf_checkpoint(tmp_path / "one_layer", tiny_config(num_hidden_layers=1))  # quick to trace
    capsys.readouterr()  # transformers' save progress bar
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: Perturbed(real(*a, **k), 0.05))
    out = tmp_path / "wrong.onnx"
    assert cli_main(["export", "--out", str(out), "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "differ from torch's" in err and "not kept" in err and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.glob("*.unverified.onnx")), "a refused export left a file"


def test_export_never_touches_a_users_file_beside_the_output(tmp_path):
    """The file is staged under a fresh name: a user's file with any name beside --out survives."""
    mine = tmp_path / "model.unverified.onnx"
    mine.write_text("my notes")
    assert cli_main(["export", "--out", str(tmp_path / "model.onnx")]) == 0
    assert mine.read_text() == "my notes"
    assert (tmp_path / "model.onnx").exists() and not list(tmp_path.glob(".model.*"))


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime", "onnxscript"])
def test_missing_extra_is_named(tmp_path, monkeypatch, capsys, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    assert cli_main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert missing in err and 'pip install "ast-min[onnx]"' in err and err.count("\n") == 1, err


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert cli_main(["export", "--out", str(tmp_path / "m.txt")]) == 2
    assert "must name a .onnx file" in capsys.readouterr().err
    assert cli_main(["export", "--out", str(tmp_path / "m.onnx"), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    headless = save_random_hf_checkpoint(tmp_path / "enc", tiny_config(), head=False)
    capsys.readouterr()
    assert cli_main(["export", "--out", str(tmp_path / "m.onnx"), "--checkpoint", str(headless)]) == 2
    assert "no classification head" in capsys.readouterr().err
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, np.zeros(100, dtype=np.float32), 16000)  # under one 400-sample frame
    assert cli_main(["export", "--out", str(tmp_path / "m.onnx"), "--audio", str(tiny)]) == 2
    err = capsys.readouterr().err
    assert "'" + str(tiny) + "' lasts 6.2 ms, shorter than one 25 ms frame" in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.onnx").exists()


def test_the_exported_file_has_the_permissions_a_plain_write_gives(tmp_path):
    """A new file gets 0o666 less the umask (not tempfile's 0o600); a replaced file keeps its own mode."""
    import os
    import stat

    ckpt = save_random_hf_checkpoint(tmp_path / "one_layer", tiny_config(num_hidden_layers=1))  # quick to trace
    new, existing = tmp_path / "new.onnx", tmp_path / "existing.onnx"
    existing.write_text("an earlier export")
    os.chmod(existing, 0o640)
    umask = os.umask(0o022)
    try:
        for out in (new, existing):
            assert cli_main(["export", "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640 and existing.read_bytes() != b"an earlier export"
