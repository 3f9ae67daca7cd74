"""Is my run normal? The comparison of a run's epochs with its recipe's committed reference history."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import run_check
from ast_min.data import SyntheticDataset
from ast_min.recipes import get_recipe
from ast_min.run_check import compare_with_reference, reference_history
from ast_min.train import RunOptions, train

# A made-up reference: loss halves every two epochs, accuracy climbs.
CURVE = [{"epoch": e, "train_loss": 2.4 * 0.5 ** ((e - 1) / 2), "eval_loss": 2.5 * 0.5 ** ((e - 1) / 2),
          "eval_accuracy": min(1.0, 0.1 * e), "eval_mAP": min(1.0, 0.12 * e)} for e in range(1, 13)]


@pytest.fixture
def made_up(tmp_path, monkeypatch):
    path = tmp_path / "reference_history.json"
    path.write_text(json.dumps({"recipe": "synthetic", "history": CURVE}))
    monkeypatch.setitem(run_check.REFERENCE_FILES, "synthetic", path)
    return CURVE


def test_line_quotes_the_reference_at_the_same_epoch(made_up):
    ref = made_up[2]  # epoch 3
    line = compare_with_reference("synthetic", 3, {"train_loss": ref["train_loss"] * 1.26, "eval_accuracy": 0.25})
    assert line.startswith("vs reference, epoch 3: ")
    assert f"train loss {ref['train_loss'] * 1.26:.4f} (reference {ref['train_loss']:.4f}, +26 %)" in line, line
    assert "accuracy 0.250 (reference 0.300)" in line, line
    assert "FAR OFF" not in line, line  # 26 % above at epoch 3 is still ahead of the reference at epoch 1


def test_a_run_at_half_the_pace_is_flagged(made_up):
    # After epoch 8 this run has the loss the reference had after epoch 4 minus a hair: not flagged ...
    at_four = made_up[3]["train_loss"]
    assert "FAR OFF" not in compare_with_reference("synthetic", 8, {"train_loss": at_four})
    # ... and just above it (behind the reference's epoch 8 // 2 = 4): flagged, quoting the reference's epoch 4.
    line = compare_with_reference("synthetic", 8, {"train_loss": at_four * 1.01})
    assert "FAR OFF" in line and f"after epoch 4 ({at_four:.4f})" in line, line


def test_a_run_that_does_not_learn_or_diverges_is_flagged(made_up):
    first = made_up[0]["train_loss"]
    assert "FAR OFF" not in compare_with_reference("synthetic", 1, {"train_loss": first * 1.5})  # epoch 1: no pace yet
    assert "not learning" in compare_with_reference("synthetic", 2, {"train_loss": first * 1.01})
    assert "not learning" in compare_with_reference("synthetic", 5, {"train_loss": math.nan})


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.floats(0.0, 1.0))
def test_a_run_at_or_ahead_of_the_reference_is_never_flagged(epoch, fraction):
    history = CURVE
    line = run_check._warning(history, epoch, history[epoch - 1]["train_loss"] * fraction)
    assert line is None, (epoch, fraction, line)


def test_nothing_to_compare_with(made_up):
    assert compare_with_reference("synthetic", 13, {"train_loss": 0.1}) is None  # past the reference's last epoch
    assert compare_with_reference("esc50", 1, {"train_loss": 0.1}) is None  # a recipe without a reference
    assert compare_with_reference(get_recipe("synthetic").replace(lr=1e-4), 1, {"train_loss": 0.1}) is None  # changed
    assert compare_with_reference(get_recipe("synthetic"), 1, {"train_loss": 2.0}) is not None  # the preset itself


def test_the_committed_reference_is_the_synthetic_recipe_s_run():
    history = reference_history("synthetic")
    recipe = get_recipe("synthetic")
    assert history is not None, "the synthetic recipe should ship its reference history"
    assert [r["epoch"] for r in history] == list(range(1, recipe.epochs + 1))
    classes = len(SyntheticDataset(1, **recipe.synthetic).labels)
    # A run from random weights starts near chance, ln(C), and the reference ends far below it.
    assert abs(history[0]["train_loss"] - math.log(classes)) < 0.5, history[0]
    assert history[-1]["train_loss"] < 0.5 * math.log(classes), history[-1]
    assert max(r["eval_accuracy"] for r in history) >= 0.9, "the reference run is the default model's, >= 95 % on ten classes"
    # The reference run, compared with itself, is normal at every epoch.
    for record in history:
        line = compare_with_reference("synthetic", record["epoch"], record)
        assert line is not None and "FAR OFF" not in line and "+0 %" in line, line


def test_train_prints_the_comparison_each_epoch(tmp_path, monkeypatch, capsys):
    """The hook in the training loop: a run of the (here: tiny) preset prints one comparison per epoch."""
    tiny = get_recipe("synthetic").replace(
        max_length=32, num_mel_bins=32, epochs=2, batch_size=8, warmup_steps=0, synthetic={},
        model=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    )
    monkeypatch.setattr(run_check, "get_recipe", lambda name: tiny)
    path = tmp_path / "reference_history.json"
    path.write_text(json.dumps({"history": CURVE[:2]}))
    monkeypatch.setitem(run_check.REFERENCE_FILES, "synthetic", path)
    train(tiny, SyntheticDataset(16, seed=0, num_frames=32), SyntheticDataset(10, seed=1, num_frames=32),
          RunOptions(output_dir=str(tmp_path / "run"), progress=False))
    out = capsys.readouterr().out
    assert "vs reference, epoch 1: " in out and "vs reference, epoch 2: " in out, out
    assert f"(reference {CURVE[1]['train_loss']:.4f}, " in out, out
