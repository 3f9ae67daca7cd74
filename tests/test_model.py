"""ast-min's model against transformers' AST, loaded from the same randomised checkpoint.

The reference is `transformers.ASTForAudioClassification`, built with every weight randomised
(tests/hf_reference.py) and written by its own `save_pretrained`; ast-min reads that directory.

Tolerances. The property tests run both models in float64: the two libraries perform the same
operations in possibly different orders (different matmul blocking, softmax kernels), and in
float64 such reordering moves a value O(1..100) by ~1e-13 per layer, so 1e-9 leaves a wide
margin while any real mistake (a swapped token, a missing bias, a wrong eps) shows up at 1e-3 or
more. The AST-Base test runs in float32 as users do: reordering error there grows like
eps32 * sqrt(reduction length) ~ 1e-7 * 60 per matmul, ~1e-5 relative after 12 layers.
"""

import sys
import tempfile
import types

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import ast_min
from ast_min import ASTConfig, ASTForAudioClassification, ASTModel
from ast_min import backends
from ast_min.backends import resolve_attn_implementation
from ast_min.bench.model import forward_flops
from ast_min.checkpoint import adapt_position_embeddings
from ast_min.compat import classification_loss
from ast_min.model import patchify
from hf_reference import random_hf_model, save_random_hf_checkpoint, tiny_config

F64 = dict(atol=1e-9, rtol=1e-9)


@st.composite
def small_configs(draw):
    """Small random AST architectures: every size the config lets vary, patches kept few for speed."""
    patch = draw(st.integers(2, 8))
    fs, ts = draw(st.integers(1, patch + 2)), draw(st.integers(1, patch + 2))
    heads, head_dim = draw(st.integers(1, 4)), draw(st.sampled_from([2, 4, 8]))
    return dict(
        hidden_size=heads * head_dim,
        num_attention_heads=heads,
        num_hidden_layers=draw(st.integers(1, 3)),
        intermediate_size=draw(st.sampled_from([8, 16, 32])),
        patch_size=patch,
        frequency_stride=fs,
        time_stride=ts,
        num_mel_bins=draw(st.integers(patch, patch + 3 * fs)),
        max_length=draw(st.integers(patch, patch + 6 * ts)),
        num_labels=draw(st.integers(1, 6)),
    )


def _labels(kind, batch, num_labels, gen):
    if kind is None:
        return None
    if kind == "single":
        return torch.randint(0, num_labels, (batch,), generator=gen)
    if kind == "multi":
        return (torch.rand(batch, num_labels, generator=gen, dtype=torch.float64) > 0.5).double()
    return torch.randn(batch, num_labels, generator=gen, dtype=torch.float64)  # regression targets


def _pair(hf_kwargs, seed, attn, hf_attn="sdpa"):
    """The transformers model and ast-min's, loaded from transformers' saved checkpoint, both float64.

    transformers' eager attention takes its softmax in float32 even for float64 inputs, so the
    float64 reference for values is its sdpa path; its eager path serves for attention maps only.
    """
    hf = random_hf_model(seed=seed, **hf_kwargs)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = ASTForAudioClassification.from_pretrained(d, attn_implementation=attn)
    hf.set_attn_implementation(hf_attn)
    return hf.double(), ours.double()


@settings(max_examples=30)
@given(
    cfg=small_configs(),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    attn=st.sampled_from(["eager", "sdpa"]),
    label_kind=st.sampled_from([None, "single", "multi", "regression"]),
)
def test_outputs_and_gradients_equal_transformers(cfg, batch, seed, attn, label_kind):
    if label_kind == "single" and cfg["num_labels"] == 1:
        label_kind = "regression"  # one output is always regression in transformers
    # classification types are inferred from the label dtype (as transformers does); float targets
    # for several outputs would be read as multi-label, so regression is asked for by name
    cfg["problem_type"] = "regression" if label_kind == "regression" else None
    hf, ours = _pair(cfg, seed, attn)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg["max_length"], cfg["num_mel_bins"], generator=gen, dtype=torch.float64)
    labels = _labels(label_kind, batch, cfg["num_labels"], gen)

    x_hf, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = hf(x_hf, labels=labels, output_hidden_states=True)
    out = ours(x_ours, labels=labels, output_hidden_states=True)
    torch.testing.assert_close(out.logits, ref.logits, **F64)
    torch.testing.assert_close(
        out.pooler_output, hf.audio_spectrogram_transformer(x).pooler_output, **F64
    )
    assert len(out.hidden_states) == len(ref.hidden_states) == cfg["num_hidden_layers"] + 1
    for mine, theirs in zip(out.hidden_states, ref.hidden_states):
        torch.testing.assert_close(mine, theirs, **F64)

    if labels is not None:
        torch.testing.assert_close(out.loss, ref.loss, **F64)
        objective_ours, objective_hf = out.loss, ref.loss
    else:
        w = torch.randn(out.logits.shape, generator=gen, dtype=torch.float64)
        objective_ours, objective_hf = (out.logits * w).sum(), (ref.logits * w).sum()
    objective_ours.backward()
    objective_hf.backward()
    torch.testing.assert_close(x_ours.grad, x_hf.grad, **F64)
    # every parameter's gradient, matched to transformers 5.x's in-memory names (renamed here by hand)
    hf_grads = {n: p.grad for n, p in hf.named_parameters()}
    renames = {".query.": ".q_proj.", ".key.": ".k_proj.", ".value.": ".v_proj.", ".attention.output.": ".attention.o_proj."}
    for name, p in ours.named_parameters():
        hf_name = name
        for a, b in renames.items():
            hf_name = hf_name.replace(a, b)
        torch.testing.assert_close(p.grad, hf_grads.pop(hf_name), **F64, msg=lambda m: f"{name}: {m}")
    assert not hf_grads, f"transformers parameters with no ast-min counterpart: {sorted(hf_grads)}"


@settings(max_examples=15)
@given(cfg=small_configs(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_attention_maps_equal_transformers_eager(cfg, batch, seed):
    """output_attentions gives every layer's softmax probabilities, whatever backend is selected."""
    hf, ours = _pair(cfg, seed, "sdpa", hf_attn="eager")
    # maps come out whatever the backend: those layers run the explicit softmax
    # drawn from the example's seed, so that hypothesis replays a failing example with the same input
    x = torch.randn(batch, cfg["max_length"], cfg["num_mel_bins"], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = hf(x, output_attentions=True)
        out = ours(x, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == cfg["num_hidden_layers"]
    L = ours.config.sequence_length
    # transformers rounds the probabilities to float32 (relative error 6e-8, grown a little by the
    # layers after it): 1e-6 here, still far below what any real mistake moves
    for mine, theirs in zip(out.attentions, ref.attentions):
        assert mine.shape == (batch, cfg["num_attention_heads"], L, L)
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-6)
    # The logits carry that rounding through every later block, and a LayerNorm over a few features
    # divides by their spread, which can be small: up to 1e-5 (the float64 comparison of values is the
    # sdpa test above); a real mistake (a wrong scale, a missing bias) moves them by far more.
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    # and each map is the softmax of scaled scores computed here from the layer's own input
    h = out.hidden_states  # checked against transformers' sdpa path by the test above
    for layer, block in enumerate(ours.audio_spectrogram_transformer.layers):
        a, Dh = block.attention, cfg["hidden_size"] // cfg["num_attention_heads"]
        z = block.layernorm_before(h[layer])
        q = a.query(z).unflatten(-1, (-1, Dh)).transpose(1, 2)
        k = a.key(z).unflatten(-1, (-1, Dh)).transpose(1, 2)
        torch.testing.assert_close(out.attentions[layer], (q @ k.transpose(-1, -2) / Dh**0.5).softmax(-1), **F64)


def test_ast_base_size_equals_transformers_float32():
    """One example at the released size (87M parameters, 1214 tokens), float32, sdpa on both sides."""
    hf = random_hf_model(seed=3, num_labels=527)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = ASTForAudioClassification.from_pretrained(d, attn_implementation="sdpa")
    assert ours.config.sequence_length == 1214
    x = torch.randn(1, 1024, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True)
        out = ours(x, output_hidden_states=True)
    # float32 reordering error, relative to the values' size (module docstring)
    for mine, theirs in zip(out.hidden_states, ref.hidden_states):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)


# ---- pieces -------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    patch=st.integers(1, 9),
    fs=st.integers(1, 10),
    ts=st.integers(1, 10),
    extra_f=st.integers(0, 20),
    extra_t=st.integers(0, 30),
    batch=st.integers(1, 3),
)
def test_patchify_cuts_the_patches_a_loop_cuts(patch, fs, ts, extra_f, extra_t, batch):
    F_, T_ = patch + extra_f, patch + extra_t
    x = torch.randn(batch, T_, F_, dtype=torch.float64)
    got = patchify(x, patch, fs, ts)
    f, t = (F_ - patch) // fs + 1, (T_ - patch) // ts + 1
    expected = torch.stack(
        [
            x[:, j * ts : j * ts + patch, i * fs : i * fs + patch].transpose(1, 2).reshape(batch, -1)
            for i in range(f)  # frequency-major: all time positions of frequency row 0 first
            for j in range(t)
        ],
        dim=1,
    )
    torch.testing.assert_close(got, expected, atol=0, rtol=0)  # pure indexing: exact


@settings(max_examples=25)
@given(cfg=small_configs(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_unfold_patch_embedding_equals_conv(cfg, batch, seed):
    torch.manual_seed(seed)
    model = ASTModel(ASTConfig(**cfg)).double()
    pe = model.embeddings.patch_embeddings
    x = torch.randn(batch, cfg["max_length"], cfg["num_mel_bins"], dtype=torch.float64)
    torch.testing.assert_close(pe.forward_by_unfold(x), pe(x), **F64)
    # and the conv form is torch's conv2d on the (B, 1, F, T) image, flattened frequency-major
    ref = torch.nn.functional.conv2d(x.unsqueeze(1).transpose(2, 3), pe.projection.weight, pe.projection.bias,
                                     stride=(cfg["frequency_stride"], cfg["time_stride"]))
    torch.testing.assert_close(pe(x), ref.flatten(2).transpose(1, 2), **F64)


def test_fresh_model_has_the_configured_sizes_and_random_tokens():
    cfg = ASTConfig(**tiny_config())
    model = ASTForAudioClassification(cfg)
    emb = model.audio_spectrogram_transformer.embeddings
    assert emb.position_embeddings.shape == (1, cfg.sequence_length, cfg.hidden_size)
    assert emb.position_embeddings.std() > 0 and emb.cls_token.std() > 0  # not zeros: positions distinguishable
    out = model(torch.randn(2, cfg.max_length, cfg.num_mel_bins))
    assert out.logits.shape == (2, cfg.num_labels) and out.loss is None and out.hidden_states is None


@pytest.mark.parametrize("overrides", [{}, dict(num_labels=7, max_length=80, frequency_stride=6, num_hidden_layers=3)])
def test_flops_formula_equals_torchs_flop_counter(overrides):
    """The bench's arithmetic against torch's own count of the matmuls and the convolution a forward
    pass runs (FlopCounterMode: 2 FLOPs per multiply-add, elementwise work not counted). The eager
    backend spells attention as two matmuls; the counter has no formula for the CPU's fused SDPA kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = ASTConfig(**tiny_config(**overrides))
    model = ASTForAudioClassification(cfg).eval()
    model.set_attn_implementation("eager")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, cfg.max_length, cfg.num_mel_bins))
    assert forward_flops(cfg) == counter.get_total_flops(), (forward_flops(cfg), counter.get_total_flops())


# ---- losses -------------------------------------------------------------------------------------


@settings(max_examples=30)
@given(batch=st.integers(1, 4), num_labels=st.integers(1, 6), kind=st.sampled_from(["single", "multi", "regression"]))
def test_loss_matches_definitions(batch, num_labels, kind):
    logits = torch.randn(batch, num_labels, dtype=torch.float64)
    if kind == "single" and num_labels > 1:
        y = torch.randint(0, num_labels, (batch,))
        logp = logits - logits.logsumexp(-1, keepdim=True)
        expected = -logp[torch.arange(batch), y].mean()
    elif kind == "multi" and num_labels > 1:
        y = (torch.rand(batch, num_labels) > 0.5).double()
        p = torch.sigmoid(logits)
        expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    else:
        y = torch.randn(batch, num_labels, dtype=torch.float64)
        expected = ((logits - y) ** 2).mean()
        problem = "regression"  # float targets for C > 1 would otherwise mean multi-label
        torch.testing.assert_close(classification_loss(logits, y, problem), expected, **F64)
        return
    torch.testing.assert_close(classification_loss(logits, y), expected, **F64)


def test_explicit_problem_type_wins_and_bad_targets_are_explained():
    logits = torch.randn(3, 4)
    y = torch.tensor([0, 1, 3])
    with pytest.raises(ValueError, match="logits' shape"):
        classification_loss(logits, y, "multi_label_classification")
    for outside in (4, -1):  # torch would raise an IndexError (a device assert on CUDA)
        with pytest.raises(ValueError, match=f"label id {outside} is outside the model's 4 labels"):
            classification_loss(logits, torch.tensor([0, outside, 3]))
    ignored = classification_loss(logits, torch.tensor([0, -100, 3]))  # -100 is skipped, as transformers
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 3]))
    torch.testing.assert_close(ignored, expected, rtol=0, atol=0)


# ---- dtypes, backends, compile, bad input ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_close_to_float32(dtype):
    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_config())).eval()
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        ref = model(x).logits
        half = model.to(dtype)(x).logits  # float32 input is cast to the model's dtype
    assert half.dtype == dtype
    # bf16 keeps 8 significant bits (rounding error up to 2^-8 = 4e-3; torch.finfo's eps is 2^-7), fp16 11
    # (2^-11): a 2-layer model stays within a few of them
    torch.testing.assert_close(half.float(), ref, atol=5e-2, rtol=5e-2)


def test_autocast_bfloat16_on_cpu():
    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_config())).eval()
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        ref = model(x).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x).logits
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_torch_compile_traces_without_graph_breaks(backend):
    # "eager" checks that dynamo traces the whole model; "inductor" (torch.compile's default, slow to
    # compile) also generates and runs fused C++ code, which must compute the same logits.
    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_config())).eval()
    model.set_attn_implementation("sdpa")
    x = torch.randn(2, 64, 32)
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # fullgraph: a graph break is an error
    with torch.no_grad():
        torch.testing.assert_close(compiled(x).logits, model(x).logits)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_backends_agree_in_training_mode_without_dropout(attn):
    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_config())).double().train()
    x = torch.randn(2, 64, 32, dtype=torch.float64)
    model.set_attn_implementation("eager")
    ref = model(x).logits
    model.set_attn_implementation(attn)
    torch.testing.assert_close(model(x).logits, ref, **F64)


def test_auto_is_sdpa_on_cpu_and_unknown_backends_are_refused():
    assert resolve_attn_implementation("auto", torch.device("cpu")) == "sdpa"
    assert resolve_attn_implementation("eager", torch.device("cpu")) == "eager"
    model = ASTModel(ASTConfig(**tiny_config()))
    with pytest.raises(ValueError, match="unknown attn_implementation 'flash'.*eager"):
        model.set_attn_implementation("flash")


def test_a_backend_is_one_entry_of_the_registry(monkeypatch):
    # A backend added to ATTENTION_FUNCTIONS is accepted by name, runs in every layer, and appears in the
    # refusal's list; the reference is the sdpa backend's output (torch's own kernel).
    calls = []

    def math_in_float64(q, k, v, scale, dropout=0.0):
        calls.append(q.shape)
        probs = ((q.double() @ k.double().transpose(-2, -1)) * scale).softmax(-1)
        return (probs @ v.double()).to(q.dtype), None

    monkeypatch.setitem(backends.ATTENTION_FUNCTIONS, "f64", math_in_float64)
    torch.manual_seed(0)
    config = ASTConfig(**tiny_config())
    model = ASTModel(config).eval()
    x = torch.randn(2, config.max_length, config.num_mel_bins)
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        expected = model(x).last_hidden_state
        model.set_attn_implementation("f64")
        got = model(x).last_hidden_state
    assert len(calls) == config.num_hidden_layers
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown attn_implementation 'nope'.*'f64'"):
        model.set_attn_implementation("nope")


@pytest.mark.parametrize(
    "kernels_module, match",
    [(None, "needs `ast_min.kernels` and triton.*use attn_implementation='sdpa'"),  # import fails
     (types.SimpleNamespace(TRITON_AVAILABLE=False), "Triton kernel is not available here.*'sdpa'")],
)  # fmt: skip
def test_triton_without_the_kernel_raises_a_clear_error_and_auto_falls_back(monkeypatch, kernels_module, match):
    # None in sys.modules (and no attribute on the package): `from ast_min import kernels` raises ImportError
    monkeypatch.setitem(sys.modules, "ast_min.kernels", kernels_module)
    if kernels_module is None:
        monkeypatch.delattr(ast_min, "kernels", raising=False)
    else:
        monkeypatch.setattr(ast_min, "kernels", kernels_module, raising=False)
    model = ASTForAudioClassification(ASTConfig(**tiny_config()))
    model.set_attn_implementation("triton")
    with pytest.raises(RuntimeError, match=match):
        model(torch.randn(1, 64, 32))
    backends._triton_available.cache_clear()  # cached per process: recompute under the patch, and after
    try:
        assert resolve_attn_implementation("auto", torch.device("cuda")) == "sdpa"
    finally:
        backends._triton_available.cache_clear()


@pytest.mark.parametrize(
    "shape, match",
    [((2, 63, 32), "max_length=64"), ((2, 64, 31), "num_mel_bins=32"), ((64, 32), "shape \\(64, 32\\)")],
)
def test_wrong_input_shapes_say_what_the_model_takes(shape, match):
    model = ASTForAudioClassification(ASTConfig(**tiny_config()))
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_non_tensor_and_integer_inputs_are_refused_clearly():
    model = ASTModel(ASTConfig(**tiny_config()))
    with pytest.raises(ValueError, match="torch.Tensor"):
        model([[0.0] * 32] * 64)
    with pytest.raises(ValueError, match="floating point"):
        model(torch.zeros(1, 64, 32, dtype=torch.long))
    from ast_min import BatchFeature

    with pytest.raises(ValueError, match=r"call model\(\*\*features\)"):  # the extractor's output as is
        model(BatchFeature(input_values=torch.zeros(1, 64, 32)))


# ---- position-embedding adaptation ----------------------------------------------------------------


def original_repo_adapt(pos_embed, t_dim):
    """YuanGongND/ast src/models/ast_models.py, AudioSet-pretrained branch, restated for a test:
    12 x 101 grid, cut the time axis from the middle when shorter, else bilinear interpolation.
    The original hard-codes D = 768; D is read off the tensor here so tiny models can use it too."""
    D = pos_embed.shape[2]
    new = pos_embed[:, 2:, :].reshape(1, 1212, D).transpose(1, 2).reshape(1, D, 12, 101)
    if t_dim < 101:
        new = new[:, :, :, 50 - int(t_dim / 2) : 50 - int(t_dim / 2) + t_dim]
    else:
        new = torch.nn.functional.interpolate(new, size=(12, t_dim), mode="bilinear")
    new = new.reshape(1, D, 12 * t_dim).transpose(1, 2)
    return torch.cat([pos_embed[:, :2, :], new], dim=1)


@pytest.mark.parametrize("max_length", [1024, 512, 128, 100, 2048])
def test_position_embedding_adaptation_follows_the_original_repo(max_length):
    pos = torch.randn(1, 1214, 768, generator=torch.Generator().manual_seed(max_length))
    t_dim = (max_length - 16) // 10 + 1
    got = adapt_position_embeddings(pos, (12, 101), (12, t_dim))
    torch.testing.assert_close(got, original_repo_adapt(pos, t_dim), atol=1e-6, rtol=1e-6)
    if max_length == 1024:
        assert torch.equal(got, pos)


def test_position_embedding_frequency_axis_cut_and_interpolated():
    """The ImageNet branch of the original code adapts both axes: time first, then frequency."""
    pos = torch.randn(1, 2 + 6 * 5, 4)
    grid = pos[:, 2:].transpose(1, 2).reshape(1, 4, 6, 5)
    cut = adapt_position_embeddings(pos, (6, 5), (2, 5))
    torch.testing.assert_close(cut[:, 2:], grid[:, :, 2:4, :].reshape(1, 4, 10).transpose(1, 2))
    up = adapt_position_embeddings(pos, (6, 5), (9, 7))
    ref = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(grid, size=(6, 7), mode="bilinear"), size=(9, 7), mode="bilinear"
    )
    torch.testing.assert_close(up[:, 2:], ref.reshape(1, 4, 63).transpose(1, 2))
    with pytest.raises(ValueError, match="grid needs"):
        adapt_position_embeddings(pos, (5, 5), (2, 5))


def test_from_pretrained_max_length_adapts_the_grid_and_runs(tmp_path):
    cfg = tiny_config(patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=128, max_length=1024)
    save_random_hf_checkpoint(tmp_path, cfg, seed=1)
    full = ASTForAudioClassification.from_pretrained(tmp_path)
    short = ASTForAudioClassification.from_pretrained(tmp_path, max_length=512)
    assert short.config.max_length == 512 and short.config.time_out_dimension == 50
    expected = original_repo_adapt(full.audio_spectrogram_transformer.embeddings.position_embeddings, 50)
    torch.testing.assert_close(short.audio_spectrogram_transformer.embeddings.position_embeddings, expected)
    assert short(torch.randn(1, 512, 128)).logits.shape == (1, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_auto_backend_matches_cpu_float64(dtype):
    """On a GPU "auto" picks the Triton kernel when it is available; any backend and dtype there
    stays within its precision of a float64 CPU run (TF32/bf16/fp16 matmuls: 1e-2 relative)."""
    from ast_min import kernels

    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_config())).eval()
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        ref = model.double()(x.double()).logits
        expected = "triton" if kernels.TRITON_AVAILABLE else "sdpa"
        assert resolve_attn_implementation("auto", torch.device("cuda")) == expected
        out = model.to("cuda", dtype)(x.cuda()).logits
    tol = 1e-2 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(out.double().cpu(), ref, atol=tol, rtol=tol)
