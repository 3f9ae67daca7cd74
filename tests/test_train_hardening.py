"""`ast-min train` against hostile and careless use: what it must refuse, never lose, never run.

Each test reproduces one way a run could execute code, lose files or results, or fail late with an
unclear message, and checks the behaviour that replaces it. The runs are tiny (a one-layer AST 32
wide, 0.33-s synthetic clips, one or two epochs of a couple of batches, one thread) to keep them fast.
"""

import json
import os
import re
import shlex
import shutil

import pytest
import torch

import ast_min.train as train_module
from ast_min import ASTForAudioClassification, run_folder
from ast_min.cli import main as cli_main
from ast_min.data import ClipDataset, SyntheticDataset
from ast_min.data.synthetic import write_class_folders
from ast_min.recipes import get_recipe
from ast_min.run_folder import INFO_FILE, STATE_FILE
from ast_min.train import RunOptions, train

TINY = get_recipe("synthetic").replace(
    model=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    max_length=32, num_mel_bins=32, norm_mean=-4.0, norm_std=4.0,
    lr=3e-3, epochs=1, batch_size=8, warmup_steps=0,
)
CLI_TINY = ["--epochs", "1", "--batch-size", "8", "--max-length", "32", "--num-mel-bins", "32", "--train-size", "16",
            "--eval-size", "8", "--hidden-size", "32", "--num-hidden-layers", "1", "--num-attention-heads", "2",
            "--intermediate-size", "64", "--norm-mean", "-4", "--norm-std", "4", "--no-progress"]


def _run(output_dir, recipe=TINY, clips=(16, 8), **options):
    options.setdefault("progress", False)
    return train(recipe, SyntheticDataset(clips[0], seed=0, num_frames=recipe.max_length),
                 SyntheticDataset(clips[1], seed=1, num_frames=recipe.max_length), RunOptions(output_dir=str(output_dir), **options))


@pytest.fixture(autouse=True)
def one_thread():
    """Runs this small gain nothing from threads, and lose much to oversubscription on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_training(monkeypatch):
    """Make any epoch fail loudly: a check that must come before training is shown to do so."""

    def epoch(*args, **kwargs):
        raise AssertionError("an epoch started before the bad input was refused")

    monkeypatch.setattr(train_module, "_train_one_epoch", epoch)


# ---- security --------------------------------------------------------------------------------------------------------------
class _CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a hostile pickle can run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_resume_never_unpickles_code(tmp_path, capsys):
    run = tmp_path / "run"
    _run(run)
    marker = tmp_path / "code_ran"
    state = run / "last" / STATE_FILE
    torch.save({"model": {}, "optimizer": {}, "scaler": {}, "state": _CreatesAFile(str(marker)), "recipe": {}}, state)
    with pytest.raises(ValueError, match=rf"refusing to resume from '{re.escape(str(state))}'.*could run code"):
        _run(run, TINY.replace(epochs=2), resume=True)
    assert not marker.exists()
    # the command line: one line naming the file, exit status 2
    assert cli_main(["train", "--output-dir", str(run), "--resume", *CLI_TINY, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and STATE_FILE in err and "Traceback" not in err
    assert not marker.exists()


def test_a_damaged_or_mismatched_state_names_the_file_and_why(tmp_path):
    run = tmp_path / "run"
    _run(run)
    state = run / "last" / STATE_FILE
    with pytest.raises(ValueError, match=r"written by a run with other settings \(model .*hidden_size.*64"):
        _run(run, TINY.replace(epochs=2, model={**TINY.model, "hidden_size": 64, "intermediate_size": 128}), resume=True)
    state.write_bytes(state.read_bytes()[:100])  # cut short
    with pytest.raises(ValueError, match=rf"cannot read the trainer state '{re.escape(str(state))}'.*damaged.*--overwrite"):
        _run(run, TINY.replace(epochs=2), resume=True)


TAMPERED = [  # (what is changed in the saved state, the field and the problem the message must name)
    (lambda s: s["state"].update(epoch="x"), "state.epoch is 'x', expected a whole number of epochs trained"),
    (lambda s: s["state"].update(epoch=-3), "state.epoch is -3, expected a whole number of epochs trained, at least 1"),
    (lambda s: s["state"].update(epoch=10**9), f"state.epoch is 1000000000, but {INFO_FILE} beside it records epoch 1"),
    (lambda s: s["state"].update(epoch=True), "state.epoch is True, expected a whole number"),
    (lambda s: s.update(state=[]), "state is a list, expected a dict"),
    (lambda s: s["state"].pop("wa"), "state lacks wa"),
    (lambda s: s["state"].update(step=-1), "state.step is -1, expected a whole number of optimiser steps"),
    (lambda s: s["state"].update(history="abc"), "state.history is 'abc', expected a list of 1 records, one per epoch"),
    (lambda s: s["state"].update(history=[{"epoch": 7}]), "state.history[0] is {'epoch': 7}, expected the record of epoch 1"),
    (lambda s: s["state"].update(best={"metrics": {}}), "state.best is {'metrics': {}}, expected None or {'epoch': 1..1"),
    (lambda s: s["state"]["best"].update(metrics={}), "state.best.metrics is {}, expected the evaluation metrics"),
    (lambda s: s["state"].update(wa_count=2), "state.wa_count is 2 with state.wa None, expected the number of epochs averaged"),
    (lambda s: s["state"].update(wa={"x": torch.zeros(1)}, wa_count=1), "state.wa is not a weight average of this run's model"),
    (lambda s: s.update(recipe="notadict"), "recipe is a str, expected a dict"),
    (lambda s: s.update(model=[]), "model is a list, expected a dict"),
    (lambda s: s.update(labels="ab"), "labels is 'ab', expected a list of label names"),
]


def test_a_tampered_trainer_state_names_the_file_and_the_field(tmp_path, monkeypatch, capsys):
    """Plain data (no pickle) edited into the state: each refused on --resume, before anything is restored or trained."""
    run = tmp_path / "run"
    _run(run)
    state = run / "last" / STATE_FILE
    original = state.read_bytes()
    monkeypatch.setattr(train_module, "_train_one_epoch", lambda *a, **k: pytest.fail("an epoch started"))
    for i, (tamper, says) in enumerate(TAMPERED):
        saved = torch.load(state, weights_only=True)
        tamper(saved)
        torch.save(saved, state)
        with pytest.raises(ValueError) as err:
            _run(run, TINY.replace(epochs=2), resume=True)
        assert str(err.value).startswith(f"{str(state)!r}: {says}"), (i, str(err.value))
        assert str(err.value).endswith("the trainer state was edited or damaged: start a new run with --overwrite "
                                       "(or another --output-dir)"), str(err.value)
        state.write_bytes(original)
    # the command line: one line, exit status 2
    saved = torch.load(state, weights_only=True)
    saved["state"]["epoch"] = "x"
    torch.save(saved, state)
    assert cli_main(["train", "--output-dir", str(run), "--resume", *CLI_TINY, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{str(state)!r}: state.epoch is 'x'" in err and "Traceback" not in err, err
    # the untouched state still resumes
    state.write_bytes(original)
    monkeypatch.undo()
    assert [r["epoch"] for r in _run(run, TINY.replace(epochs=2), resume=True)["history"]] == [1, 2]


# ---- data loss --------------------------------------------------------------------------------------------------------------
def test_a_non_empty_output_dir_needs_resume_or_overwrite(tmp_path, no_training):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"already holds files \(notes.txt\): pass --resume.*--overwrite"):
        _run(run)
    with pytest.raises(ValueError, match="give one of them"):
        _run(run, resume=True, overwrite=True)
    # A best/ the trainer did not write (a user's own checkpoint) is never replaced, even with --overwrite.
    (run / "best").mkdir()
    (run / "best" / "config.json").write_text("{}")
    for flags in (dict(overwrite=True), dict(resume=True)):
        with pytest.raises(ValueError, match=r"best' was not written by ast-min train"):
            _run(run, **flags)
    assert (run / "best" / "config.json").read_text() == "{}" and (run / "notes.txt").read_text() == "mine"
    # A last/ with a trainer state but no training_info.json is not the trainer's either: never resumed or replaced.
    (run / "last").mkdir()
    (run / "last" / STATE_FILE).write_bytes(b"")
    for flags in (dict(overwrite=True), dict(resume=True)):
        with pytest.raises(ValueError, match=r"last' was not written by ast-min train"):
            _run(run, **flags)
    assert (run / "last" / STATE_FILE).read_bytes() == b""


def test_overwrite_replaces_only_the_trainers_own_checkpoints(tmp_path):
    run = tmp_path / "run"
    _run(run, TINY.replace(epochs=2))
    (run / "notes.txt").write_text("mine")
    summary = _run(run, overwrite=True)
    assert [r["epoch"] for r in summary["history"]] == [1]
    assert json.load(open(run / "history.json"))[-1]["epoch"] == 1  # the new run's history, not the old one's
    assert json.load(open(run / "last" / INFO_FILE))["epoch"] == 1
    assert (run / "notes.txt").read_text() == "mine"
    # --init may name the old run's own best/: it is read before the old checkpoints are removed.
    _run(run, overwrite=True, init=str(run / "best"))
    assert json.load(open(run / "best" / INFO_FILE))["epoch"] == 1
    # A file a user added inside a trainer checkpoint makes it theirs: refused, nothing removed.
    (run / "last" / "my_notes.md").write_text("keep me")
    with pytest.raises(ValueError, match="last' was not written by ast-min train"):
        _run(run, overwrite=True)
    assert (run / "last" / "my_notes.md").read_text() == "keep me"


class _Crash(BaseException):
    """A simulated interruption (power cut, kill -9): nothing in the trainer may catch it."""


def _crash_at(monkeypatch, k: int, log: list):
    """Make the k-th file-system step of saving last/ raise _Crash before it happens; log every step."""
    steps = {"os.replace": (os, "replace"), "os.remove": (os, "remove"), "os.rmdir": (os, "rmdir"),
             "os.makedirs": (os, "makedirs"), "torch.save": (torch, "save")}
    for name, (module, attr) in steps.items():
        real = getattr(module, attr)

        def step(*args, _real=real, _name=name, **kwargs):
            paths = [str(a) for a in args if isinstance(a, (str, os.PathLike))]
            if any(re.search(r"[/\\]last(\.tmp|\.old)?([/\\]|$)", p) for p in paths):
                log.append((_name, paths))
                if len(log) == k:
                    raise _Crash(f"interrupted before step {k}: {_name} {paths}")
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, attr, step)


def test_an_interrupted_save_resumes_from_the_newest_complete_checkpoint(tmp_path, monkeypatch, capsys):
    recipe = TINY.replace(epochs=2, mixup=0.5, freqm=4, timem=4)
    clips = (8, 4)  # one optimiser step per epoch: the save is what is tested
    reference = _run(tmp_path / "whole", recipe, clips)
    expected = {k: v.clone() for k, v in reference["model"].state_dict().items()}
    # Where each step of saving epoch 2's last/ can be interrupted: list the steps once.
    _run(tmp_path / "epoch1", recipe.replace(epochs=1), clips)
    shutil.copytree(tmp_path / "epoch1", tmp_path / "count")
    steps = []
    with monkeypatch.context() as patch:
        _crash_at(patch, 0, steps)
        _run(tmp_path / "count", recipe, clips, resume=True)
    renames = [i + 1 for i, (name, paths) in enumerate(steps) if name == "os.replace" and
               any(p.endswith(os.sep + "last") for p in paths)]
    assert len(renames) == 2 and len(steps) >= 8, steps  # last -> last.old, last.tmp -> last, among the writes
    resumed_from = []
    for k in range(1, len(steps) + 1):
        run = tmp_path / f"crash{k}"
        shutil.copytree(tmp_path / "epoch1", run)  # epoch 1 saved whole
        with monkeypatch.context() as patch:
            _crash_at(patch, k, [])
            with pytest.raises(_Crash):
                _run(run, recipe, clips, resume=True)  # epoch 2's save interrupted before its step k
        capsys.readouterr()
        summary = _run(run, recipe, clips, resume=True)
        said = re.search(r"resuming .* after epoch (\d)", capsys.readouterr().out)
        resumed_from.append(int(said.group(1)))
        assert [r["epoch"] for r in summary["history"]] == [1, 2]
        on_disk = ASTForAudioClassification.from_pretrained(run / "last").state_dict()
        for name, value in expected.items():  # the run ends as if it had never stopped
            torch.testing.assert_close(on_disk[name], value, rtol=0, atol=0, msg=f"crash before step {k}: {name}")
        leftovers = sorted(p for p in os.listdir(run) if p.endswith((".tmp", ".old")))
        assert leftovers == [], (k, leftovers)
    # Once epoch 2's copy is complete (before the first rename at the latest), resume must use it,
    # in particular between the two renames, when only last.old and last.tmp exist.
    assert resumed_from[renames[0] - 1 :] == [2] * (len(steps) - renames[0] + 1), (resumed_from, steps)
    assert resumed_from == sorted(resumed_from) and resumed_from[0] == 1, resumed_from


def test_ctrl_c_says_what_was_saved_and_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_epoch = train_module._train_one_epoch

    def interrupted_in_epoch_two(*args, **kwargs):
        if args[7] == 2:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    argv = ["train", "--output-dir", str(run), *CLI_TINY, "--epochs", "2"]
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_train_one_epoch", interrupted_in_epoch_two)
        assert cli_main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert f"interrupted; {run / 'last'} holds epoch 1 of 2" in err, err
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("ast-min train ") and command.endswith("--resume"), command
    assert cli_main(shlex.split(command)[1:]) == 0  # the printed command resumes the run
    assert "resuming" in capsys.readouterr().out
    assert [r["epoch"] for r in json.load(open(run / "history.json"))] == [1, 2]


# ---- refused before training ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--norm-std", "4"], "--norm-std needs --norm-mean"),
    (["--norm-mean", "-4"], "--norm-mean needs --norm-std"),
    (["--norm-mean", "-4", "--norm-std", "0"], "--norm-std must be a positive, finite number, got 0.0"),
    (["--norm-mean", "-4", "--norm-std", "-1"], "--norm-std must be a positive"),
    (["--norm-mean", "-4", "--norm-std", "nan"], "--norm-std must be a positive"),
    (["--norm-mean", "inf", "--norm-std", "4"], "--norm-mean must be a finite number"),
    (["--device", "tpu9"], "--device 'tpu9' is not a device"),
    (["--lr", "nan"], "lr (nan) must be positive (and lr finite)"),
    (["--weight-decay", "inf"], "weight_decay (inf)"),
    (["--train-size", "0"], "--train-size and --eval-size of at least 1 (recipe 'synthetic' with these options: 0 and"),
])
def test_bad_options_are_refused_before_training(tmp_path, capsys, no_training, argv, message):
    base = [a for a in CLI_TINY if a not in ("--norm-mean", "-4", "--norm-std", "4")]
    assert cli_main(["train", "--output-dir", str(tmp_path / "run"), *base, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_cuda_without_cuda_is_refused(tmp_path, capsys, monkeypatch, no_training):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_main(["train", "--output-dir", str(tmp_path / "run"), *CLI_TINY, "--device", "cuda"]) == 2
    assert "--device cuda: this machine has no CUDA device" in capsys.readouterr().err


def test_a_library_recipe_with_half_the_statistics_is_refused(tmp_path, no_training):
    with pytest.raises(ValueError, match="--norm-mean needs --norm-std"):
        _run(tmp_path / "run", TINY.replace(norm_std=None))
    with pytest.raises(ValueError, match="--norm-std must be a positive"):
        _run(tmp_path / "run", TINY.replace(norm_std=0.0))


def test_a_one_class_dataset_is_refused_before_training(tmp_path, no_training):
    write_class_folders(tmp_path / "all", 10, seed=0, num_frames=32)
    only = tmp_path / "one"
    only.mkdir()
    os.rename(tmp_path / "all" / "pure_tone", only / "pure_tone")
    data = ClipDataset.from_folder(only)
    with pytest.raises(ValueError, match=r"1 class \('pure_tone'\): a classifier needs at least two"):
        train(TINY, data, data, RunOptions(output_dir=str(tmp_path / "run"), progress=False))


def test_an_output_dir_that_is_a_file_or_unwritable_is_refused_before_training(tmp_path, monkeypatch, no_training):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--output-dir '.*file' is a file"):
        _run(tmp_path / "file")
    with pytest.raises(ValueError, match=r"cannot write to --output-dir '.*file/sub'"):
        _run(tmp_path / "file" / "sub")  # under a file: makedirs fails
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    if os.access(locked, os.W_OK):  # root writes anyway: make creating a file there fail as it would for a user
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(run_folder.tempfile, "mkstemp", refuse)
    with pytest.raises(ValueError, match=r"cannot write to --output-dir '.*locked' \(Permission denied\)"):
        _run(locked)


# ---- gradient checkpointing ---------------------------------------------------------------------------------------------
def test_gradient_checkpointing_trains_the_same_weights(tmp_path, monkeypatch):
    """--gradient-checkpointing only moves work from memory to compute: recomputing each block in the
    backward pass replays the same float operations (no dropout in this recipe), so an epoch with it
    ends on the same weights, up to the summation-order rounding of the recomputed graph."""
    enabled = []
    build = train_module.build_model

    def build_and_record(*args, **kwargs):
        model = build(*args, **kwargs)
        enable = model.gradient_checkpointing_enable
        model.gradient_checkpointing_enable = lambda: (enabled.append(True), enable())
        return model

    monkeypatch.setattr(train_module, "build_model", build_and_record)
    plain = cli_main(["train", "--output-dir", str(tmp_path / "plain"), *CLI_TINY])
    recomputed = cli_main(["train", "--output-dir", str(tmp_path / "recomputed"), *CLI_TINY, "--gradient-checkpointing"])
    assert plain == recomputed == 0 and enabled == [True]
    a = ASTForAudioClassification.from_pretrained(tmp_path / "plain" / "last").state_dict()
    b = ASTForAudioClassification.from_pretrained(tmp_path / "recomputed" / "last").state_dict()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, f"weights differ by {worst:.3g} with gradient checkpointing"
