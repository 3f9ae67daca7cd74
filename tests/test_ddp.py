"""Scale-out: the same training function under `torchrun` with 2 gloo processes on the CPU.

After a few optimiser steps both ranks must hold identical weights (DDP broadcasts rank 0's
initial weights and all-reduces the gradients, so the replicas never drift), and those weights must
equal a single-process run with the same global batch: each rank takes half of every global batch
(DistributedSampler), and the mean of the two half-batch gradients is the full-batch gradient.
"""

import os
import subprocess
import sys
import textwrap

import torch

from ast_min.data import SyntheticDataset
from ast_min.recipes import get_recipe
from ast_min.train import RunOptions, build_model, train

RECIPE = get_recipe("synthetic").replace(
    model=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    max_length=32, num_mel_bins=32, norm_mean=-4.0, norm_std=4.0, lr=3e-3, epochs=2, batch_size=8,
    warmup_steps=2, lr_decay_start=1, mixup=0.5, freqm=6, timem=6, noise=True,
)

WORKER = textwrap.dedent(
    """
    import os, sys, torch
    import torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from test_ddp import RECIPE, datasets
    from ast_min.train import RunOptions, train
    out, grad_accum, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = RunOptions(output_dir=os.path.join(out, "run"), progress=False, device="cpu", grad_accum=grad_accum)
    summary = train(RECIPE.replace(epochs=epochs), *datasets(), options)
    assert dist.get_world_size() == 2, "torchrun should have started a 2-process group"
    torch.save(summary["model"].state_dict(), os.path.join(out, f"rank{{dist.get_rank()}}.pt"))
    dist.destroy_process_group()
    """
)


def datasets():
    return SyntheticDataset(24, seed=0, num_frames=32), SyntheticDataset(10, seed=1, num_frames=32)


def run_two_ranks(tmp_path, grad_accum: int = 1, epochs: int = RECIPE.epochs):
    """Train on 2 gloo processes; returns torchrun's result and each rank's final weights."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(tmp_path), str(grad_accum), str(epochs)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    # Both replicas applied the same all-reduced gradients to the same weights: bitwise equal.
    for k in rank0:
        torch.testing.assert_close(rank1[k], rank0[k], rtol=0, atol=0)
    return result, rank0


def test_grad_accum_with_an_incomplete_last_accumulation_keeps_the_replicas_equal(tmp_path):
    # 24 clips, global batch 8: 3 batches of 4 per rank. With grad_accum 2 the epoch's third batch
    # starts an accumulation it cannot finish; it must still be all-reduced before its step, or
    # each rank applies its own gradient and the replicas drift apart (run_two_ranks checks).
    per_rank_batches = len(datasets()[0]) // RECIPE.batch_size
    assert per_rank_batches % 2 == 1
    run_two_ranks(tmp_path, grad_accum=2, epochs=1)


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    result, rank0 = run_two_ranks(tmp_path)
    # Rank 0 logged one line per epoch, rank 1 nothing.
    assert result.stdout.count("epoch 2/2") == 1

    single = train(RECIPE, *datasets(), RunOptions(output_dir=str(tmp_path / "single"), progress=False, device="cpu"))
    # The gradient of the global batch is summed in another order (two half-batch means, then their
    # mean): float32 rounding only. Adam moves a parameter whose gradient is ~0 by up to lr on that
    # noise, so weights are compared to a tenth of one step; a rank training on the wrong clips, or
    # gradients not all-reduced at all (each rank stepping on its own half-batch), would differ by
    # ~lr per step. (Summed instead of averaged gradients would not show: Adam is scale-invariant.)
    for k, v in single["model"].state_dict().items():
        torch.testing.assert_close(rank0[k], v, rtol=0, atol=RECIPE.lr / 10)
    # ... and the comparison means something: 6 steps moved the weights far beyond that tolerance.
    torch.manual_seed(0)  # the run's seed: the same random initial weights
    initial = build_model(RECIPE, dict(enumerate(SyntheticDataset.labels)), False, None, "auto").state_dict()
    moved = max((rank0[k] - initial[k]).abs().max().item() for k in initial)
    assert moved > RECIPE.lr  # ten times the tolerance
