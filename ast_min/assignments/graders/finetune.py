"""Grader of `finetune`: SpecAugment's fill value and masks, position embeddings for a new clip length,
a fresh head for a new label set, and a hand-written training loop judged by held-out accuracy.

Everything starts from ast-min's embedded default model; its own labels and patch grid are read from
its config (never assumed), the new label set groups the synthetic sound classes into four kinds, and
the clips are 64 frames long. Budget: `train` gets TRAIN_SECONDS on one CPU thread (the grading
worker's), the whole test TRAIN_SECONDS + 60 s for features and evaluation. The model lives in the
student's process: it crosses as settings and weights (`worker_model.py` rebuilds it there), and the
grader reads back what it asks for (the labels, the logits on clips whose labels the student's
process never sees). Pass mark: 85 %
held-out accuracy on EVAL_CLIPS clips; the embedded model's features separate these kinds
almost perfectly, so a working loop clears it with room to spare, while a broken one (no learning:
25 % by chance) cannot.

Unit checks: `adapt_positions` equals `ast_min.checkpoint.adapt_position_embeddings` exactly up to float
rounding of the interpolation (1e-6); the loss of the fresh head at initialisation must be within
0.25 of ln C: a head whose logits have standard deviation s adds about s^2 / 2 to ln C, so 0.25
allows torch's default Linear initialisation (weights uniform in +-1/sqrt(D), variance 1/(3D), on
a fresh LayerNorm's output of unit variance: s = 1/sqrt(3), adding 1/6) and refuses weights of order 1.

Shape legend: N clips, T frames, F mel bins, f x t patch grid, D hidden size, C labels.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from hypothesis import strategies as st

from ast_min import ASTConfig, ASTFeatureExtractor, checkpoint
from ast_min import model as ast_model
from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake, RemoteObject, type_name

DEFAULT_MODEL = Path(ast_model.__file__).resolve().parent / "default_model"
LABELS = ("tonal", "sweep", "noise", "harmonic")
KIND = {  # synthetic class -> new label; clips of any other class are left out
    "pure_tone": "tonal", "am_tone": "tonal", "tone_bursts": "tonal",
    "rising_chirp": "sweep", "falling_chirp": "sweep",
    "white_noise": "noise", "pink_noise": "noise",
    "click_train": "harmonic", "harmonic_stack": "harmonic", "square_wave": "harmonic",
}
FRAMES = 64
TRAIN_CLIPS, EVAL_CLIPS = 200, 100
TRAIN_SECONDS = 60.0
PASS_ACCURACY = 0.85

GRADER = Grader(
    "finetune",
    forbidden=("ast_min.train", "ast_min.checkpoint.adapt_position_embeddings", "ast_min.checkpoint.load_pretrained",
               "ast_min.data.augment.spec_augment"),
    # the model crosses to the student's process as settings and weights, rebuilt there by worker_model.py
    shipped={ast_model.ASTForAudioClassification: lambda m: (
        "ast_classifier", {"config": m.config.to_dict(), "state": dict(m.state_dict()), "training": m.training})},
    worker_modules=("ast_min.assignments.worker_model",),
)
T_FILL, T_MASKS, T_POS_WORKED, T_POS, T_HEAD, T_TRAIN = (
    "fill_value: the normalised log-mel zero",
    "apply_masks: bands and frames set to the value, input untouched",
    "adapt_positions: the default model's grid for 64-frame clips",
    "adapt_positions equals the original rule for any grids",
    "new_head: C outputs, the new labels, loss at initialisation close to ln C",
    f"train: >= {PASS_ACCURACY:.0%} held-out accuracy within {TRAIN_SECONDS:.0f} s, the model left in eval mode",
)

MISTAKES = [
    Mistake("fill_zero", "you fill masks with 0, but the features are normalised: the original masks the log-mel "
            "with 0 *before* (x - mean) / (2 std), which is -mean / (2 std) after it",
            ("return -mean / (2 * std)", "return 0.0"), T_FILL),
    Mistake("fill_one_std", "AST normalises by 2 std, not std: the masked value is -mean / (2 std)",
            ("return -mean / (2 * std)", "return -mean / std"), T_FILL),
    Mistake("crop_from_start", "you cut the shorter time axis from its start; the original cuts from the middle, "
            "start = old // 2 - new // 2",
            ("start = t // 2 - nt // 2", "start = 0"), T_POS_WORKED),
    Mistake("interpolate_when_shorter", "you interpolated a shorter axis; the original repository cuts it from the "
            "middle (its author found that better) and interpolates only a longer one",
            ("if nt < t:\n        start = t // 2 - nt // 2\n        grid = grid[..., start : start + nt]\n    elif nt > t:",
             "if nt != t:"), T_POS_WORKED),
    Mistake("head_large_init", "your new head's logits are large at initialisation, so the loss starts far above "
            "ln C: initialise the Linear layer's weights small (e.g. truncated normal, std 0.02) and its bias at 0",
            ("torch.nn.init.trunc_normal_(head[1].weight, std=0.02)", "torch.nn.init.normal_(head[1].weight, std=1.0)"),
            T_HEAD),
]
HINTS = {m.name: m.hint for m in MISTAKES}


# ---- the model and the data (the grader's side) -------------------------------------------------------------


def load_default():
    return ast_model.ASTForAudioClassification.from_pretrained(DEFAULT_MODEL, attn_implementation="sdpa")


def fill_variants(mean, std) -> dict[str, torch.Tensor]:
    return {"fill_zero": torch.tensor([0.0], dtype=torch.float64),
            "fill_one_std": torch.tensor([-mean / std], dtype=torch.float64)}


def grid_of(config) -> tuple[int, int]:
    return config.frequency_out_dimension, config.time_out_dimension


@functools.lru_cache(maxsize=1)
def norm_stats() -> tuple[float, float]:
    extractor = ASTFeatureExtractor.from_pretrained(DEFAULT_MODEL)
    return extractor.mean, extractor.std


@functools.lru_cache(maxsize=2)
def dataset(seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` clips of FRAMES frames with a new label each: normalised features (N, T, F) and labels (N,)."""
    from ast_min.data import synthetic
    from ast_min.extractor import extract_input_values
    from ast_min.features import samples_for_frames

    config = ASTConfig.from_pretrained(DEFAULT_MODEL)  # the settings only: the weights are not needed here
    mean, std = norm_stats()
    waves, labels, index = [], [], 0
    while len(waves) < size:
        wave, cls = synthetic.make_clip(seed, index, samples_for_frames(FRAMES))
        index += 1
        if synthetic.CLASSES[cls] in KIND:
            waves.append(torch.from_numpy(wave))
            labels.append(LABELS.index(KIND[synthetic.CLASSES[cls]]))
    x, _ = extract_input_values(waves, num_mel_bins=config.num_mel_bins, max_length=FRAMES, mean=mean, std=std)
    return x, torch.tensor(labels)


def rule(pe, old, new, *, crop="middle") -> torch.Tensor:
    """The original repository's rule, with switches for the two cropping mistakes (time axis)."""
    (f, t), (nf, nt) = old, new
    D = pe.shape[2]
    grid = pe[:, 2:].transpose(1, 2).reshape(1, D, f, t)
    interp = torch.nn.functional.interpolate
    if nt < t and crop != "interpolate":
        start = 0 if crop == "start" else t // 2 - nt // 2
        grid = grid[..., start : start + nt]
    elif nt != t:
        grid = interp(grid, size=(f, nt), mode="bilinear", align_corners=False)
    if nf < f:
        grid = grid[:, :, f // 2 - nf // 2 : f // 2 - nf // 2 + nf]
    elif nf > f:
        grid = interp(grid, size=(nf, nt), mode="bilinear", align_corners=False)
    return torch.cat([pe[:, :2], grid.reshape(1, D, nf * nt).transpose(1, 2)], dim=1)


def position_variants(pe, old, new) -> dict[str, torch.Tensor]:
    return {"crop_from_start": rule(pe, old, new, crop="start"),
            "interpolate_when_shorter": rule(pe, old, new, crop="interpolate")}


def check_positions(ctx, pe, old, new):
    ctx.inputs = dict(position_embeddings=pe, old_grid=old, new_grid=new)
    got = ctx.call("adapt_positions", pe.clone(), old, new)
    ctx.compare(got, checkpoint.adapt_position_embeddings(pe, old, new), "adapt_positions' output",
                atol=1e-6, rtol=1e-6, variants=position_variants, hints=HINTS,
                derive=Call("finetune", "adapt_positions", (pe, old, new), axes=("1", "tokens", "D")))


def adapted_model(ctx):
    """The default model with the student's position embeddings for FRAMES-frame clips."""
    model = load_default()
    config = model.config.replace(max_length=FRAMES)
    encoder = model.audio_spectrogram_transformer
    pe = ctx.call("adapt_positions", encoder.embeddings.position_embeddings.detach().clone(),
                  grid_of(model.config), grid_of(config))
    ctx.expect_tensor(pe, "adapt_positions' output", (1, config.sequence_length, config.hidden_size))
    model.config = encoder.config = config
    encoder.embeddings.position_embeddings = torch.nn.Parameter(pe.detach().clone().float())
    return model


def returned_model(returned, name: str):
    """The model `name` returned (it stays in the student's process), as the task asks; else a `Fail` saying so.

    (A model object itself is what the graders' own unit tests pass, calling a module in this process.)"""
    if not isinstance(returned, (RemoteObject, torch.nn.Module)):
        raise Fail(f"`{name}` should return the model, as the task says; it returned {type_name(returned)}")
    return returned


def with_new_head(ctx):
    """The adapted model in the student's process, after their `new_head` (its draws follow the grading seed)."""
    model = returned_model(ctx.call("new_head", ctx.remote(adapted_model(ctx)), LABELS), "new_head")
    labels = model.config.id2label
    if not isinstance(labels, dict) or labels != dict(enumerate(LABELS)):
        raise Fail(f"after new_head, model.config.id2label should be {dict(enumerate(LABELS))}, got "
                   f"{labels!r:.200}: set model.config = model.config.replace(id2label=...)")
    return model


# ---- 1. unit checks ----------------------------------------------------------------------------------------------


@GRADER.test(T_FILL)
def fill(ctx):
    def check(args):
        mean, std = args
        ctx.inputs = dict(mean=mean, std=std)
        got = ctx.call("fill_value", mean, std)
        if not isinstance(got, (float, int)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            raise Fail(f"fill_value should return a number, got {type(got).__name__}")
        # the second input that confirms a hint: other statistics
        second = ((mean - 1.3, std + 0.7), {})
        expected = torch.tensor([-mean / (2 * std)], dtype=torch.float64)
        ctx.compare(torch.tensor([float(got)], dtype=torch.float64), expected, "the fill value", atol=1e-9, rtol=1e-9,
                    variants=fill_variants, hints=HINTS, derive=Call("finetune", "fill_value", (mean, std), second=second))

    ctx.prove(st.tuples(st.floats(-10, -0.5), st.floats(0.5, 8)), check)


@GRADER.test(T_MASKS)
def masks(ctx):
    def check(args):
        T, F, fs, fw, ts, tw, value, seed = args
        fs, ts = min(fs, F - 1), min(ts, T - 1)
        x = torch.randn(T, F, generator=torch.Generator().manual_seed(seed))
        before = x.clone()
        ctx.inputs = dict(features=x, freq_start=fs, freq_width=fw, time_start=ts, time_width=tw, value=value)
        got = ctx.call("apply_masks", x, fs, fw, ts, tw, value)
        expected = before.clone()
        expected[:, fs : fs + fw] = value
        expected[ts : ts + tw, :] = value
        ctx.compare(got, expected, "apply_masks' output", atol=0, rtol=0,
                    derive=Call("finetune", "apply_masks", (before, fs, fw, ts, tw, value), axes=("T", "F")))
        if not torch.equal(x, before):
            raise Fail("apply_masks changed its input: work on a copy (features.clone())")

    ctx.prove(st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 11), st.integers(0, 5),
                        st.integers(0, 11), st.integers(0, 5), st.sampled_from([0.0, 0.5923, -1.0]),
                        st.integers(0, 2**16)), check)


@GRADER.test(T_POS_WORKED, points=2)
def positions_worked(ctx):
    model = load_default()
    pe = model.audio_spectrogram_transformer.embeddings.position_embeddings.detach()
    check_positions(ctx, pe, grid_of(model.config), grid_of(model.config.replace(max_length=FRAMES)))


@GRADER.test(T_POS, points=2)
def positions_property(ctx):
    def check(args):
        f, t, nf, nt, D, seed = args
        pe = torch.randn(1, 2 + f * t, D, generator=torch.Generator().manual_seed(seed))
        check_positions(ctx, pe, (f, t), (nf, nt))

    ctx.prove(st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 6), st.integers(1, 12),
                        st.integers(1, 4), st.integers(0, 2**16)), check)


@GRADER.test(T_HEAD, points=2)
def head(ctx):
    model = with_new_head(ctx)
    x, y = dataset(0, TRAIN_CLIPS)
    model.eval()
    with torch.no_grad():
        logits = model(x[:64]).logits
    ctx.expect_tensor(logits, "the logits after new_head", (64, len(LABELS)))
    loss = torch.nn.functional.cross_entropy(logits, y[:64]).item()
    expected = math.log(len(LABELS))
    if abs(loss - expected) > 0.25:
        hint = f"\n  hint (head_large_init): {HINTS['head_large_init']}" if loss > expected else ""
        raise Fail(f"the loss at initialisation is {loss:.3f}, but a fresh head over C = {len(LABELS)} labels "
                   f"should give about ln C = {expected:.3f} (within 0.25){hint}")
    ctx.notes.append(f"loss at initialisation {loss:.3f}, ln C = {expected:.3f}")


@GRADER.test(T_TRAIN, points=4, time_limit=TRAIN_SECONDS + 60.0)
def training(ctx):
    model = with_new_head(ctx)
    x, y = dataset(0, TRAIN_CLIPS)
    x_eval, y_eval = dataset(1, EVAL_CLIPS)
    mean, std = norm_stats()
    import time

    started = time.monotonic()
    returned = ctx.call("train", model, x.clone(), y.clone(), -mean / (2 * std), TRAIN_SECONDS)
    seconds = time.monotonic() - started
    model = returned_model(returned, "train")
    if seconds > TRAIN_SECONDS:
        raise Fail(f"train took {seconds:.0f} s, over its {TRAIN_SECONDS:.0f} s budget: stop when time is up")
    if model.training:
        raise Fail("train returned the model in training mode: leave it in eval mode (return model.eval()), as the "
                   "task says, so that whoever uses it next gets its inference behaviour")
    model.eval()
    with torch.no_grad():
        logits = ctx.expect_tensor(model(x_eval).logits, "the logits after train", (EVAL_CLIPS, len(LABELS)))
    accuracy = (logits.argmax(-1) == y_eval).float().mean().item()
    if accuracy < PASS_ACCURACY:
        raise Fail(f"held-out accuracy {accuracy:.1%} is under the {PASS_ACCURACY:.0%} pass mark "
                   f"(train took {seconds:.0f} s): is the loss going down? (learning rate, zero_grad, labels)")
    ctx.notes.append(f"held-out accuracy {accuracy:.1%} on {EVAL_CLIPS} clips; train took {seconds:.1f} s")


# ---- 4. edge cases ----------------------------------------------------------------------------------------------------


@GRADER.test("edge: the same grid is the identity, a longer one is interpolated, zero-width masks")
def edges(ctx):
    pe = torch.randn(1, 2 + 3 * 5, 4, generator=torch.Generator().manual_seed(7))
    check_positions(ctx, pe, (3, 5), (3, 5))
    check_positions(ctx, pe, (3, 5), (4, 9))
    x = torch.randn(5, 6)
    ctx.inputs = dict(features=x, freq_start=2, freq_width=0, time_start=4, time_width=0, value=1.0)
    ctx.compare(ctx.call("apply_masks", x, 2, 0, 4, 0, 1.0), x, "apply_masks' output", atol=0, rtol=0)
