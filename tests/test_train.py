"""The training loop: schedule and losses against torch's own, and short real runs on the synthetic set.

Runs use a tiny AST (hidden 32, one layer) on 0.33-s synthetic clips to keep them fast.
"""

import json
import os
import re

import pytest
import torch
import torch.nn.functional as nnf
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import ASTForAudioClassification
from ast_min.cli import main as cli_main
from ast_min.data import ClipDataset, SyntheticDataset
from ast_min.data.synthetic import write_class_folders
from ast_min.recipes import RECIPES, Recipe, get_recipe
from ast_min.train import RunOptions, compute_loss, learning_rate, train

TINY = get_recipe("synthetic").replace(
    model=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    max_length=32, num_mel_bins=32, norm_mean=-4.0, norm_std=4.0,
    lr=3e-3, epochs=3, batch_size=16, warmup_steps=3, lr_decay_start=1, lr_decay_every=1, lr_decay=0.8,
)


def _run(tmp_path, recipe=TINY, train_size=64, eval_size=30, **options):
    options.setdefault("progress", False)
    options.setdefault("output_dir", str(tmp_path))
    return train(recipe, SyntheticDataset(train_size, seed=0, num_frames=recipe.max_length),
                 SyntheticDataset(eval_size, seed=1, num_frames=recipe.max_length), RunOptions(**options))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- schedule and losses -------------------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(st.integers(1, 6), st.integers(1, 4), st.floats(0.1, 0.99), st.integers(0, 20), st.integers(1, 12))
def test_learning_rate_equals_torch_multisteplr_and_linear_warmup(start, every, decay, warmup, epochs):
    recipe = Recipe(lr=1e-3, lr_decay_start=start, lr_decay_every=every, lr_decay=decay, warmup_steps=warmup, epochs=epochs)
    # Reference 1: the original's MultiStepLR, stepped once after each (1-based) epoch.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    multistep = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(start, 1000, every)), gamma=decay)
    for epoch in range(1, epochs + 1):
        step_far_past_warmup = 10**6
        assert learning_rate(recipe, step_far_past_warmup, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        multistep.step()
    # Reference 2: torch's LinearLR from 1/warmup to 1 over the warm-up steps (epoch 1: no decay yet).
    if warmup:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
        linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, total_iters=max(warmup - 1, 1))
        for step in range(warmup + 3):
            expected = opt.param_groups[0]["lr"] if warmup > 1 else 1e-3
            assert learning_rate(recipe, step, 1) == pytest.approx(expected, rel=1e-9)
            opt.step()
            linear.step()


@settings(max_examples=20)
@given(st.integers(1, 8), st.integers(2, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_losses_equal_float64_definitions(batch, classes, seed, soft):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=g, dtype=torch.float64) * 3
    if soft:  # mixed labels, rows summing to one
        targets = torch.softmax(torch.randn(batch, classes, generator=g, dtype=torch.float64), -1)
    else:
        targets = nnf.one_hot(torch.randint(classes, (batch,), generator=g), classes).double()
    ce = -(targets * (logits - logits.logsumexp(-1, keepdim=True))).sum(-1).mean()
    p = 1 / (1 + torch.exp(-logits))
    bce = -(targets * torch.log(p) + (1 - targets) * torch.log1p(-p)).mean()
    # compute_loss works in float32: ~1e-6 relative rounding on O(1) losses
    torch.testing.assert_close(compute_loss(logits.float(), targets.float(), "ce").double(), ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compute_loss(logits.float(), targets.float(), "bce").double(), bce, rtol=1e-5, atol=1e-6)
    if not soft:  # one-hot rows: the usual class-index cross-entropy
        torch.testing.assert_close(compute_loss(logits, targets, "ce"), nnf.cross_entropy(logits.float(), targets.argmax(-1)).double(),
                                   rtol=1e-5, atol=1e-6)


def test_recipes_carry_the_papers_hyper_parameters():
    esc, sc, full, bal = RECIPES["esc50"], RECIPES["speechcommands"], RECIPES["audioset-full"], RECIPES["audioset-balanced"]
    assert (esc.lr, esc.epochs, esc.batch_size, esc.freqm, esc.timem, esc.mixup, esc.max_length) == (1e-5, 25, 48, 24, 96, 0.0, 512)
    assert (sc.lr, sc.epochs, sc.batch_size, sc.mixup, sc.max_length, sc.noise, sc.loss) == (2.5e-4, 30, 128, 0.6, 128, True, "bce")
    assert (full.lr, full.epochs, full.lr_decay_start, full.lr_decay, full.wa_start, full.wa_end) == (1e-5, 5, 2, 0.5, 1, 5)
    assert (bal.lr, bal.lr_decay_start, bal.lr_decay_every, bal.wa_start, bal.wa_end) == (5e-5, 10, 5, 6, 25)
    for r in RECIPES.values():
        assert r.betas == (0.95, 0.999) and r.weight_decay == 5e-7 and r.expected
    assert "95.6" in esc.expected and "98.1" in sc.expected and "0.459" in full.expected
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*esc50"):
        get_recipe("nope")


# ---- real runs -------------------------------------------------------------------------------------------------------------
def test_loss_falls_on_a_fixed_seed(tmp_path):
    recipe = TINY.replace(model=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128),
                          num_mel_bins=64, epochs=6, batch_size=8, lr=1e-3, lr_decay_start=100, freqm=4, timem=4)
    summary = _run(tmp_path, recipe, train_size=80)
    losses = [r["train_loss"] for r in summary["history"]]
    assert losses[0] > 2.0  # starts near ln(10) = 2.30, chance for ten classes
    # A model that learns nothing stays at ln(10); a fall of 0.2 is far beyond what float32 rounding
    # in another BLAS library could move a deterministic, seeded run's mean loss.
    assert losses[-1] < losses[0] - 0.2, losses
    assert all(later < losses[0] for later in losses[1:]), losses
    # the files a user gets
    for name in ("best", "last"):
        files = set(os.listdir(tmp_path / name))
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
    assert json.load(open(tmp_path / "history.json"))[-1]["epoch"] == 6
    reloaded = ASTForAudioClassification.from_pretrained(tmp_path / "last")
    for k, v in summary["model"].state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v, rtol=0, atol=0)
    assert reloaded.config.id2label[3] == "white_noise"
    assert reloaded.config.problem_type == "single_label_classification"


def test_resume_equals_an_uninterrupted_run_and_weight_averaging(tmp_path):
    # Everything random switched on: mixup, masks, noise/roll, warm-up, decay, averaging of epochs 2-3.
    recipe = TINY.replace(mixup=0.5, freqm=6, timem=6, noise=True, wa_start=2, wa_end=3)
    whole = _run(tmp_path / "whole", recipe)
    first = _run(tmp_path / "cut", recipe.replace(epochs=2))  # "interrupted" after epoch 2
    after_two = _weights(ASTForAudioClassification.from_pretrained(tmp_path / "cut" / "last"))
    resumed = _run(tmp_path / "cut", recipe, resume=True)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    # Same machine, same operations in the same order: bitwise equal.
    last_whole = ASTForAudioClassification.from_pretrained(tmp_path / "whole" / "last").state_dict()
    last_resumed = ASTForAudioClassification.from_pretrained(tmp_path / "cut" / "last").state_dict()
    for k in last_whole:
        torch.testing.assert_close(last_resumed[k], last_whole[k], rtol=0, atol=0)
    assert whole["history"][-1]["eval_loss"] == resumed["history"][-1]["eval_loss"]
    # Weight averaging: the mean of the end-of-epoch weights of epochs 2 and 3 (float32 mean: 1 ulp).
    averaged = ASTForAudioClassification.from_pretrained(tmp_path / "whole" / "averaged").state_dict()
    for k in averaged:
        torch.testing.assert_close(averaged[k], (after_two[k] + last_whole[k]) / 2, rtol=1e-6, atol=1e-7)
    assert first["history"][-1]["epoch"] == 2


def test_gradient_accumulation_equals_a_larger_batch(tmp_path):
    recipe = TINY.replace(epochs=1, freqm=6, timem=6, warmup_steps=0)
    big = _run(tmp_path / "big", recipe.replace(batch_size=16))
    accumulated = _run(tmp_path / "acc", recipe.replace(batch_size=8), grad_accum=2)
    # Same clips and augmentations, gradients summed in another order: float32 rounding only. Adam
    # divides each gradient by its running RMS, so a parameter whose true gradient is ~0 steps by
    # up to +-lr on rounding noise alone: compare weights to a tenth of one step (lr / 10), far
    # below what one wrong batch would move them (~lr per step), and the eval loss to float32 rounding.
    for k, v in big["model"].state_dict().items():
        torch.testing.assert_close(accumulated["model"].state_dict()[k], v, rtol=0, atol=recipe.lr / 10)
    assert accumulated["history"][0]["eval_loss"] == pytest.approx(big["history"][0]["eval_loss"], rel=1e-5)
    assert accumulated["history"][0]["train_loss"] == pytest.approx(big["history"][0]["train_loss"], rel=1e-5)


class _Exploding:
    """A front end whose features are 1e6 times too large: fp16 activations overflow to inf."""

    sampling_rate, max_length = 16000, 32

    def __call__(self, waveforms, sampling_rate, return_tensors):
        class Out:
            input_values = torch.full((len(waveforms), 32, 32), 1e6)

        return Out()

    def save_pretrained(self, directory):
        pass


def test_fp16_divergence_stops_with_a_clear_message(tmp_path):
    with pytest.raises(RuntimeError, match="diverged at epoch 1.*--precision bf16"):
        train(TINY, SyntheticDataset(16, num_frames=32), SyntheticDataset(8, seed=1, num_frames=32),
              RunOptions(output_dir=str(tmp_path), precision="fp16", progress=False), feature_extractor=_Exploding())


def test_fp16_scale_collapse_stops_with_a_clear_message(tmp_path, monkeypatch):
    # Finite losses, non-finite gradients (a hook on one weight): the scaler skips every step and
    # halves its scale, 2**16 * 0.5**n < 1e-4 first at n = 30, so the run stops after 30 skipped
    # steps through the scale check, not the non-finite-loss one.
    import ast_min.train as train_module

    build_model = train_module.build_model

    def build_with_inf_gradients(*args, **kwargs):
        model = build_model(*args, **kwargs)
        next(model.parameters()).register_hook(lambda grad: torch.full_like(grad, float("inf")))
        return model

    monkeypatch.setattr(train_module, "build_model", build_with_inf_gradients)
    with pytest.raises(RuntimeError, match=r"diverged at epoch 1, step 30: loss is \d+\.\d+ \(fp16\).*--precision bf16"):
        _run(tmp_path, TINY.replace(batch_size=2, epochs=1), train_size=64, precision="fp16")


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="grad_accum"):
        _run(tmp_path, grad_accum=0)
    with pytest.raises(ValueError, match="precision"):
        _run(tmp_path, precision="fp8")
    with pytest.raises(ValueError, match="wa_start"):
        _run(tmp_path, TINY.replace(wa_start=3, wa_end=2))
    with pytest.raises(ValueError, match="loss"):
        _run(tmp_path, TINY.replace(loss="hinge"))


# ---- the command line ------------------------------------------------------------------------------------------------------
def test_cli_trains_on_folders_and_skips_an_unreadable_file(tmp_path, capsys):
    write_class_folders(tmp_path / "train", 20, seed=0, num_frames=32)
    write_class_folders(tmp_path / "eval", 10, seed=1, num_frames=32)
    (tmp_path / "train" / "pure_tone" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    args = ["train", "--data", str(tmp_path / "train"), "--eval-data", str(tmp_path / "eval"), "--output-dir",
            str(tmp_path / "run"), "--epochs", "1", "--batch-size", "7", "--max-length", "32", "--num-mel-bins", "32",
            "--no-progress", "--balanced"]
    with pytest.warns(UserWarning, match="skipping unusable audio file .*broken.wav"):
        assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "best epoch 1" in out
    assert re.search(r"[1-9]\d* unusable clips skipped", out)  # balanced sampling may draw the file more than once
    config = json.load(open(tmp_path / "run" / "best" / "config.json"))
    assert config["id2label"]["0"] == "am_tone" and len(config["id2label"]) == 10
    pre = json.load(open(tmp_path / "run" / "best" / "preprocessor_config.json"))
    assert pre["num_mel_bins"] == 32 and pre["max_length"] == 32
    assert -20 < pre["mean"] < 0 and 0 < pre["std"] < 10  # computed on the training clips, not AudioSet's


def test_unreadable_clips_are_counted_with_dataloader_workers(tmp_path):
    # A worker process holds its own copy of the dataset, so the main process's copy never sees
    # the failure: the count must travel with the batches (one drop per epoch, each file drawn once).
    write_class_folders(tmp_path / "train", 10, seed=0, num_frames=32)
    write_class_folders(tmp_path / "eval", 10, seed=1, num_frames=32)
    (tmp_path / "train" / "pure_tone" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    train_set, eval_set = ClipDataset.from_folder(tmp_path / "train"), ClipDataset.from_folder(tmp_path / "eval")
    recipe = TINY.replace(epochs=2, batch_size=8)
    # (The warning is the worker's, printed on its stderr, out of pytest's reach.)
    summary = train(recipe, train_set, eval_set, RunOptions(output_dir=str(tmp_path / "run"), progress=False, num_workers=1))
    assert [record["skipped_files"] for record in summary["history"]] == [1, 1]


def test_cli_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["train", "--data", str(tmp_path / "empty"), "--eval-data", str(tmp_path / "empty")]) == 2
    assert "no class sub-folders" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tmp_path / "empty")]) == 2
    assert "--eval-data" in capsys.readouterr().err
    assert cli_main(["train", "--recipe", "esc50", "--output-dir", str(tmp_path / "o")]) == 2
    assert "give --data" in capsys.readouterr().err


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from ast_min.cli import build_parser

    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        assert action.option_strings[-1] in text
    assert "95.6 %" in text and "torchrun" in text


def test_fine_tune_from_a_transformers_checkpoint_with_other_frames_and_labels(tmp_path):
    transformers = pytest.importorskip("transformers")
    # A checkpoint written by transformers for 64 frames and 3 labels, every weight random.
    config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    max_length=64, num_mel_bins=32, num_labels=3)
    torch.manual_seed(1)
    theirs = transformers.ASTForAudioClassification(config)
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0, 0.5)
    theirs.save_pretrained(tmp_path / "init")
    from safetensors.torch import load_file

    start = load_file(tmp_path / "init" / "model.safetensors")  # the names on disk (docs/DESIGN.md)

    recipe = TINY.replace(epochs=1, batch_size=16, warmup_steps=0)  # 32 frames, 10 labels: 4 Adam steps
    summary = _run(tmp_path / "run", recipe, train_size=64, init=str(tmp_path / "init"))
    model = summary["model"]
    assert model.config.max_length == 32 and model.config.id2label[9] == "tone_bursts"
    # Each Adam step moves a weight by at most ~lr * (1 - b1) / sqrt(1 - b2) = 1.6 lr: the encoder
    # must sit within 4 such steps of the checkpoint (a random start would be ~0.5 away).
    bound = 4 * 1.6 * recipe.lr
    ours = model.state_dict()
    key = "audio_spectrogram_transformer.encoder.layer.0.attention.attention.query.weight"
    near_start = next((k for k in ours if ours[k].shape == start[key].shape and (ours[k] - start[key]).abs().max() < bound), None)
    assert near_start is not None, "no weight of the query's shape stayed near the checkpoint's query weight"
    # Position embeddings: the original repo's rule for fewer frames cuts the middle columns of the
    # (f, t) grid: t = (64 - 16) // 10 + 1 = 5 -> t' = (32 - 16) // 10 + 1 = 2, from column 5 // 2 - 2 // 2 = 1.
    pos = start["audio_spectrogram_transformer.embeddings.position_embeddings"]  # (1, 2 + 2 * 5, D)
    grid = pos[0, 2:].reshape(2, 5, -1)[:, 1:3].reshape(4, -1)
    expected = torch.cat([pos[0, :2], grid])[None]
    got = next(v for k, v in ours.items() if k.endswith("position_embeddings"))
    torch.testing.assert_close(got, expected, rtol=0, atol=bound)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_tracks_fp32(tmp_path, precision):
    recipe = TINY.replace(epochs=2)
    reference = _run(tmp_path / "fp32", recipe, precision="fp32")["history"]
    mixed = _run(tmp_path / precision, recipe, precision=precision)["history"]
    # bf16 keeps 8 mantissa bits (~0.4 % per rounding), fp16 11: over 8 steps the losses (~2.3)
    # stay within a few hundredths of fp32's; a broken scaler or cast would be far off or NaN.
    for a, b in zip(reference, mixed):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.05)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=0.05)
