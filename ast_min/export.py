"""ONNX export: an AST classifier as an ONNX file, checked against torch before it is kept (`ast-min export`).

    ASTForAudioClassification  input_values (batch, T, F) float32 -> logits (batch, C) float32

The graph comes from torch's dynamo exporter (`torch.export` then onnxscript's translation), with a
dynamic batch dimension; T = max_length and F = num_mel_bins are fixed by the model's position
embeddings. Attention is exported from torch's `scaled_dot_product_attention` ("sdpa", the default)
or the explicit softmax ("eager"): the two are the same function and both become plain ONNX
MatMul/Softmax nodes. The Triton kernel is a CUDA-only custom kernel with no ONNX counterpart, so it
is never exported. The features (log-mel front end) are not part of the graph: feed it
`ASTFeatureExtractor`'s `input_values`.

Before the file is kept, it must pass:
1. `onnx.checker.check_model(full_check=True)` (well-formed graph, types and shapes inferred);
2. onnxruntime against torch on random inputs and on the features of real audio, at batch 1 and
   batch 3 (a batch other than the one traced, so the dynamic dimension is exercised): the largest
   |logit difference| must stay within `logits_tolerance` (below). Otherwise the export stops with
   a message and the file is deleted.

Tolerance. Both runtimes compute in float32 (unit roundoff u = 2^-24) but sum in different orders.
A length-K inner product summed in another order moves by about sqrt(K) * u relative to its
magnitude for rounding errors that behave like independent random signs (Higham & Mary, "A new
approach to probabilistic rounding error analysis", SISC 2019); a block feeds the residual stream
through about six such stages (q, k, v projections, scores, weighted sum, output projection; two
MLP layers), whose errors add like a random walk, and LayerNorm renormalises in between. Over N
blocks and the head: sqrt(6 N + 1) * sqrt(K_max) * u relative to the logits' scale, K_max the
longest inner product (max of hidden size, MLP size, tokens). `logits_tolerance` allows ten times
that, times max(1, max |logit|), since the bound is probabilistic; an export that drops or
reorders anything (a wrong token, a missing LayerNorm, a batch mix-up) changes logits by a fraction
of their scale, far above it.

Shape legend: B batch, T frames, F mel bins, C labels.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ast_min import files
from ast_min.backends import TRACEABLE
from ast_min.features import SAMPLING_RATE, samples_for_frames

FORMATS = ("onnx",)
EXPORT_ATTENTION = TRACEABLE  # the backends that become plain ONNX operators
SAFETY = 10.0
UNIT_ROUNDOFF = 2.0**-24  # float32
CHECK_BATCHES = (1, 3)
ONNX_EXTRA_HINT = 'install the onnx extra: pip install "ast-min[onnx]" (onnx, onnxruntime, onnxscript)'


class ExportError(RuntimeError):
    """The exported graph is malformed or does not compute the model's logits."""


class LogitsOnly(torch.nn.Module):
    """The classifier with a plain tensor output: ONNX graphs return tensors, not ASTOutput."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, C)."""
        return self.model(input_values).logits


@dataclass
class ParityReport:
    """The largest |onnxruntime - torch| logit difference per check, and the tolerance they passed."""

    tolerance: float
    errors: dict[str, float]

    def to_text(self) -> str:
        rows = [f"  {name:<24} max |onnxruntime - torch| = {err:.2e}" for name, err in self.errors.items()]
        return "parity (tolerance {:.2e}):\n{}".format(self.tolerance, "\n".join(rows))


def require_onnx():
    """Import onnx, onnxruntime and onnxscript, or say which are missing and how to install them."""
    missing = []
    for module in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise RuntimeError(f"ONNX export needs {', '.join(missing)}, which are not installed: {ONNX_EXTRA_HINT}")
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def logits_tolerance(config, max_abs_logit: float) -> float:
    """The largest |logit difference| accepted between two float32 runtimes (see the module docstring)."""
    k_max = max(config.hidden_size, config.intermediate_size, config.sequence_length)
    relative = math.sqrt(6 * config.num_hidden_layers + 1) * math.sqrt(k_max) * UNIT_ROUNDOFF
    return SAFETY * relative * max(1.0, max_abs_logit)


def export_onnx(model, out: str | os.PathLike, *, audio=None, extractor=None, session_factory=None) -> ParityReport:
    """Export `model` (an ast_min ASTForAudioClassification) to `out`, check it, keep it only if it agrees.

    The model is moved to the CPU in float32 (the exporter traces there; float32 is what the
    tolerance is argued for). audio: mono 16 kHz waveforms for the real-input check (default:
    three synthetic sounds). extractor: the model's ASTFeatureExtractor (default: AudioSet
    normalisation with the model's mel bins and frames).
    session_factory: path -> object with onnxruntime's `run(None, feeds)`; tests substitute it.
    Raises ExportError (and deletes the file) when the checker or the parity check fails.
    """
    onnx, onnxruntime = require_onnx()
    if model.attn_implementation not in EXPORT_ATTENTION:
        raise ValueError(
            f"the model uses {model.attn_implementation!r} attention; export needs one of {EXPORT_ATTENTION} "
            "(model.set_attn_implementation('sdpa')): the Triton kernel has no ONNX form"
        )
    model = model.float().eval().cpu()
    out = Path(out)
    files.check_output_file(out, "out", "model.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name beside `out` (same file system, so the final rename is atomic), never a user's file,
    # created with the permissions a plain write gives (kept from `out` when it replaces one).
    staging = Path(files.new_file_beside(out, ".unverified.onnx"))
    try:
        trace(model, staging)
        try:
            onnx.checker.check_model(os.fspath(staging), full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the exported graph fails onnx.checker ({str(e).splitlines()[0]})") from None
        if session_factory is None:
            def session_factory(path):  # noqa: E306
                return onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        report = check_parity(model, session_factory(staging), check_inputs(model.config, audio, extractor))
        files.keep_mode(staging, out)
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return report


def trace(model, path: Path) -> None:
    """Run torch's dynamo exporter: one graph, batch dimension dynamic, weights inside the file."""
    config = model.config
    example = torch.zeros(2, config.max_length, config.num_mel_bins)  # (B, T, F); any B > 1 traces a symbolic batch
    # Quiet the exporter's notes about optional packages it does not need here (torchvision ops)
    # and its own deprecation warnings; errors still raise.
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                LogitsOnly(model).eval(), (example,), os.fspath(path), dynamo=True, external_data=False,
                input_names=["input_values"], output_names=["logits"],
                dynamic_shapes={"input_values": {0: torch.export.Dim("batch")}}, verbose=False,
            )  # fmt: skip
    finally:
        registry_log.setLevel(level)


def check_inputs(config, audio=None, extractor=None) -> dict[str, np.ndarray]:
    """Named (B, T, F) float32 batches at every batch size in CHECK_BATCHES: random, and real features."""
    if extractor is None:
        from ast_min.extractor import ASTFeatureExtractor

        extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
    if not audio:
        audio = synthetic_audio(samples_for_frames(config.max_length))
    rng = np.random.default_rng(0)
    inputs = {}
    for b in CHECK_BATCHES:
        shape = (b, config.max_length, config.num_mel_bins)  # (B, T, F)
        inputs[f"random, batch {b}"] = rng.standard_normal(shape, dtype=np.float32)
        clips = [audio[i % len(audio)] for i in range(b)]
        inputs[f"audio features, batch {b}"] = extractor(clips, sampling_rate=SAMPLING_RATE, return_tensors="np")[
            "input_values"
        ]
    return inputs


def synthetic_audio(num_samples: int) -> list[np.ndarray]:
    """Three different sounds (a rising chirp, a harmonic stack, pink noise) of the embedded model's kind."""
    from ast_min.data.synthetic import CLASSES, make_clip

    clips = []
    for name in ("rising_chirp", "harmonic_stack", "pink_noise"):
        # make_clip(seed, index) draws clip `index` of the class index % len(CLASSES)
        clips.append(make_clip(0, CLASSES.index(name), num_samples)[0])
    return clips


def check_parity(model, session, inputs: dict[str, np.ndarray]) -> ParityReport:
    """Run torch and the ONNX session on each input; raise ExportError past the tolerance."""
    errors, worst = {}, 0.0
    for name, x in inputs.items():
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).logits.numpy()  # (B, C)
        if not np.isfinite(expected).all():  # nothing to compare: the model itself is at fault, not the export
            raise ValueError(
                f"the model's own logits are NaN or Inf on the {name} inputs: its weights are not finite or make the "
                "logits overflow; check or retrain the checkpoint before exporting it"
            )
        got = np.asarray(session.run(None, {"input_values": x})[0])
        if got.shape != expected.shape:
            raise ExportError(
                f"{name}: onnxruntime returned logits of shape {got.shape}, torch {expected.shape}: "
                "the batch dimension is not dynamic in the exported graph"
            )
        errors[name] = float(np.abs(got.astype(np.float64) - expected).max())
        worst = max(worst, float(np.abs(expected).max()))
    tolerance = logits_tolerance(model.config, worst)
    report = ParityReport(tolerance, errors)
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    if bad:
        name, err = max(bad.items(), key=lambda kv: kv[1])
        raise ExportError(
            f"the ONNX model's logits differ from torch's by up to {err:.3g} ({name}), beyond the float32 "
            f"rounding tolerance {tolerance:.3g}; the file was not kept. Try --attention eager, or report "
            "the torch/onnxscript/onnxruntime versions"
        )
    return report


# ---- loading ------------------------------------------------------------------------------------


def load_classifier(checkpoint, attention: str = "sdpa"):
    """(ASTForAudioClassification on the CPU with `attention`, its feature extractor, a display name).

    Loaded as `ast-min classify` loads it (default model, checkpoint's preprocessor_config.json).
    """
    from ast_min.classify import Classifier

    if attention not in EXPORT_ATTENTION:
        raise ValueError(f"--attention must be one of {EXPORT_ATTENTION} (the Triton kernel has no ONNX form)")
    classifier = Classifier.load(checkpoint, device="cpu")
    classifier.model.set_attn_implementation(attention)
    return classifier.model, classifier.extractor, classifier.model_name
