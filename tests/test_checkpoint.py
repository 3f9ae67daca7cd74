"""Checkpoints: round trips with transformers, the original repository's .pth format, and bad files.

References: transformers' own `from_pretrained`/`save_pretrained` for the Hugging Face format; for
the original format, a .pth written here from a random transformers model with timm's names and a
fused qkv, by a mapping restated in this file (not imported from ast_min.checkpoint).

Tolerance: both sides run the same float32 operations; reordering alone gives ~1e-7 relative on
these small models, so 1e-5 is loose for noise and tight for any mis-mapped tensor (which moves
logits by O(1)).
"""

import json
import os

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from ast_min import ASTConfig, ASTForAudioClassification, ASTModel
from hf_reference import random_hf_model, save_random_hf_checkpoint, tiny_config

TOL = dict(atol=1e-5, rtol=1e-5)


def _x(cfg, batch=2, seed=0):
    return torch.randn(batch, cfg["max_length"], cfg["num_mel_bins"], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_transformers_save_then_ast_min_load_gives_the_same_logits(tmp_path, seed):
    cfg = tiny_config(id2label={0: "dog", 1: "cat", 2: "bird"})
    hf = random_hf_model(seed=seed, **cfg)
    hf.save_pretrained(tmp_path)
    ours = ASTForAudioClassification.from_pretrained(tmp_path)
    assert ours.config.id2label == {0: "dog", 1: "cat", 2: "bird"}
    assert not ours.training  # eval mode, as transformers returns it
    with torch.no_grad():
        torch.testing.assert_close(ours(_x(cfg)).logits, hf(_x(cfg)).logits, **TOL)


@pytest.mark.parametrize("cls_ours, cls_hf", [(ASTForAudioClassification, "ASTForAudioClassification"), (ASTModel, "ASTModel")])
def test_ast_min_save_then_transformers_load_gives_the_same_outputs(tmp_path, cls_ours, cls_hf):
    cfg = tiny_config()
    save_random_hf_checkpoint(tmp_path / "src", cfg, seed=4, head=cls_ours is ASTForAudioClassification)
    ours = cls_ours.from_pretrained(tmp_path / "src")
    ours.save_pretrained(tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    theirs = getattr(transformers, cls_hf).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        a, b = ours(_x(cfg)), theirs(_x(cfg))
    if cls_ours is ASTForAudioClassification:
        torch.testing.assert_close(a.logits, b.logits, **TOL)
    else:
        torch.testing.assert_close(a.pooler_output, b.pooler_output, **TOL)
    # and the file names are the ones transformers writes itself
    ref = transformers.ASTForAudioClassification if cls_ours is ASTForAudioClassification else transformers.ASTModel
    ref.from_pretrained(tmp_path / "src").save_pretrained(tmp_path / "ref")
    assert sorted(load_file(tmp_path / "out" / "model.safetensors")) == sorted(load_file(tmp_path / "ref" / "model.safetensors"))


def test_encoder_loads_from_a_classification_checkpoint_and_matches(tmp_path):
    cfg = tiny_config()
    hf = random_hf_model(seed=2, **cfg)
    hf.save_pretrained(tmp_path)
    enc = ASTModel.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(
            enc(_x(cfg)).last_hidden_state, hf.audio_spectrogram_transformer(_x(cfg)).last_hidden_state, **TOL
        )


def test_pytorch_model_bin_directories_load(tmp_path):
    cfg = tiny_config()
    hf = random_hf_model(seed=5, **cfg)
    hf.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    os.remove(tmp_path / "model.safetensors")
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    ours = ASTForAudioClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(ours(_x(cfg)).logits, hf(_x(cfg)).logits, **TOL)


# ---- label sets ---------------------------------------------------------------------------------


def test_new_label_set_gets_a_fresh_head_and_keeps_the_encoder(tmp_path):
    cfg = tiny_config()
    hf = random_hf_model(seed=6, **cfg)
    hf.save_pretrained(tmp_path)
    same = ASTForAudioClassification.from_pretrained(tmp_path, id2label=dict(hf.config.id2label))
    new = ASTForAudioClassification.from_pretrained(tmp_path, id2label={0: "yes", 1: "no"})
    assert new.config.num_labels == 2 and new.config.id2label == {0: "yes", 1: "no"}
    with torch.no_grad():
        torch.testing.assert_close(same(_x(cfg)).logits, hf(_x(cfg)).logits, **TOL)  # same labels: trained head
        torch.testing.assert_close(new(_x(cfg)).pooler_output, hf.audio_spectrogram_transformer(_x(cfg)).pooler_output, **TOL)
    head = new.classifier
    assert torch.equal(head.layernorm.weight, torch.ones_like(head.layernorm.weight))  # freshly initialised
    assert head.dense.weight.std() < 0.05  # initializer_range 0.02, not the checkpoint's unit-scale weights
    renamed = ASTForAudioClassification.from_pretrained(tmp_path, id2label={i: f"c{i}" for i in range(5)})
    # the checkpoint stores its label names: other names for as many classes are a new task, a new head
    assert torch.equal(renamed.classifier.layernorm.weight, torch.ones(cfg["hidden_size"]))


def test_encoder_only_checkpoint_needs_id2label_for_a_classifier(tmp_path):
    save_random_hf_checkpoint(tmp_path, tiny_config(), seed=7, head=False)
    with pytest.raises(ValueError, match="no classification head.*id2label"):
        ASTForAudioClassification.from_pretrained(tmp_path)
    model = ASTForAudioClassification.from_pretrained(tmp_path, id2label={0: "a", 1: "b", 2: "c"})
    assert model.config.num_labels == 3


# ---- the original repository's format -------------------------------------------------------------


def to_original_format(hf_model) -> dict:
    """A transformers AST's weights under the names YuanGongND/ast's .pth files use (timm DeiT in
    `self.v`, head in `mlp_head`, DataParallel's `module.`), q/k/v fused into one qkv matrix.
    Written from the original repository's module layout, independently of ast_min.checkpoint."""
    sd = hf_model.state_dict()
    base = "audio_spectrogram_transformer."
    n_layers = hf_model.config.num_hidden_layers
    out = {
        "v.cls_token": sd[base + "embeddings.cls_token"],
        "v.dist_token": sd[base + "embeddings.distillation_token"],
        "v.pos_embed": sd[base + "embeddings.position_embeddings"],
        "v.patch_embed.proj.weight": sd[base + "embeddings.patch_embeddings.projection.weight"],
        "v.patch_embed.proj.bias": sd[base + "embeddings.patch_embeddings.projection.bias"],
        "v.norm.weight": sd[base + "layernorm.weight"],
        "v.norm.bias": sd[base + "layernorm.bias"],
        "mlp_head.0.weight": sd["classifier.layernorm.weight"],
        "mlp_head.0.bias": sd["classifier.layernorm.bias"],
        "mlp_head.1.weight": sd["classifier.dense.weight"],
        "mlp_head.1.bias": sd["classifier.dense.bias"],
        # DeiT's unused ImageNet heads travel in the real files
        "v.head.weight": torch.randn(1000, hf_model.config.hidden_size),
        "v.head.bias": torch.randn(1000),
        "v.head_dist.weight": torch.randn(1000, hf_model.config.hidden_size),
        "v.head_dist.bias": torch.randn(1000),
    }
    for i in range(n_layers):
        hf, v = f"{base}layers.{i}.", f"v.blocks.{i}."  # transformers 5.x in-memory names
        for w in ("weight", "bias"):
            out[v + f"norm1.{w}"] = sd[hf + f"layernorm_before.{w}"]
            out[v + f"norm2.{w}"] = sd[hf + f"layernorm_after.{w}"]
            out[v + f"attn.qkv.{w}"] = torch.cat([sd[hf + f"attention.{p}_proj.{w}"] for p in "qkv"], dim=0)
            out[v + f"attn.proj.{w}"] = sd[hf + f"attention.o_proj.{w}"]
            out[v + f"mlp.fc1.{w}"] = sd[hf + f"mlp.fc1.{w}"]
            out[v + f"mlp.fc2.{w}"] = sd[hf + f"mlp.fc2.{w}"]
    return {"module." + k: t.clone() for k, t in out.items()}


def test_original_pth_with_explicit_config_gives_transformers_logits(tmp_path):
    cfg = tiny_config()
    hf = random_hf_model(seed=8, **cfg)
    torch.save(to_original_format(hf), tmp_path / "audioset_small.pth")
    ours = ASTForAudioClassification.from_pretrained(tmp_path / "audioset_small.pth", config=ASTConfig(**cfg))
    with torch.no_grad():
        torch.testing.assert_close(ours(_x(cfg)).logits, hf(_x(cfg)).logits, **TOL)


@pytest.mark.parametrize("max_length", [1024, 512, 128])
def test_original_pth_default_config_reads_the_grid_off_the_weights(tmp_path, max_length):
    """No config given: AST-Base geometry (12 layers and heads, 128 bins, strides 10), with the
    hidden size, label count and frame count read off the tensors (ESC-50: 512, Speech Commands: 128)."""
    cfg = dict(hidden_size=24, intermediate_size=24, num_hidden_layers=12, num_attention_heads=12,
               max_length=max_length, num_labels=3)  # fmt: skip
    hf = random_hf_model(seed=9, **cfg)
    torch.save(to_original_format(hf), tmp_path / "m.pth")
    ours = ASTForAudioClassification.from_pretrained(tmp_path / "m.pth")
    assert (ours.config.max_length, ours.config.num_labels, ours.config.hidden_size) == (max_length, 3, 24)
    x = torch.randn(1, max_length, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, **TOL)


def test_original_pth_saved_as_hf_loads_in_transformers(tmp_path):
    cfg = tiny_config()
    hf = random_hf_model(seed=10, **cfg)
    torch.save(to_original_format(hf), tmp_path / "m.pth")
    ASTForAudioClassification.from_pretrained(tmp_path / "m.pth", config=ASTConfig(**cfg)).save_pretrained(tmp_path / "hf")
    back = transformers.ASTForAudioClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(_x(cfg)).logits, hf(_x(cfg)).logits, **TOL)


# ---- bad checkpoints ----------------------------------------------------------------------------


def test_missing_path_says_how_to_get_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at.*config.json"):
        ASTForAudioClassification.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ASTForAudioClassification.from_pretrained(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("name", ["runs/model.pth", "runs/model.pt", "runs/model.bin", "runs/model.ckpt"])
def test_a_missing_relative_weights_file_is_not_taken_for_a_hub_id(monkeypatch, name):
    # `owner/name` is a hub id's shape too; a suffix that from_pretrained reads as weights says it is a file
    import huggingface_hub

    def download(*args, **kwargs):
        raise AssertionError(f"{name} was looked up on the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ASTForAudioClassification.from_pretrained(name)


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="could not be downloaded.*local checkpoint directory"):
        ASTForAudioClassification.from_pretrained("someone/some-ast-model")


def test_directory_without_weights_or_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ASTForAudioClassification.from_pretrained(tmp_path)
    ASTConfig(**tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights"):
        ASTForAudioClassification.from_pretrained(tmp_path)


def test_corrupt_files_fail_with_a_clear_message(tmp_path):
    save_random_hf_checkpoint(tmp_path / "a", tiny_config(), seed=11)
    data = (tmp_path / "a" / "model.safetensors").read_bytes()
    (tmp_path / "a" / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ASTForAudioClassification.from_pretrained(tmp_path / "a")
    (tmp_path / "junk.pth").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        ASTForAudioClassification.from_pretrained(tmp_path / "junk.pth")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ASTForAudioClassification.from_pretrained(tmp_path / "cfg")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickles_with_code_are_refused(tmp_path):
    torch.save({"module.v.cls_token": torch.zeros(1), "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only"):
        ASTForAudioClassification.from_pretrained(tmp_path / "evil.pth")


def test_mismatched_tensors_are_listed(tmp_path):
    cfg = tiny_config()
    save_random_hf_checkpoint(tmp_path, cfg, seed=12)
    # wrong architecture: one more layer than the file has -> refused by the field, before the model is built
    with pytest.raises(ValueError, match=r"^the config passed to from_pretrained does not describe the weights in "
                       r".*model.safetensors': num_hidden_layers is 3, but the weights hold 2 layers"):
        ASTForAudioClassification.from_pretrained(tmp_path, config=ASTConfig(**{**cfg, "num_hidden_layers": 3}))
    # a tensor gone from a layer the file still has -> listed as missing
    tensors = load_file(tmp_path / "model.safetensors")
    gone = next(k for k in tensors if k.endswith("layer.1.output.dense.bias"))
    save_file({k: v for k, v in tensors.items() if k != gone}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 missing: audio_spectrogram_transformer\.layers\.1\.mlp\.fc2\.bias"):
        ASTForAudioClassification.from_pretrained(tmp_path)
    # an extra tensor and a wrongly shaped one
    tensors["audio_spectrogram_transformer.pooler.dense.weight"] = torch.zeros(2, 2)
    tensors["classifier.dense.bias"] = torch.zeros(7)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError) as err:
        ASTForAudioClassification.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "1 unexpected: audio_spectrogram_transformer.pooler.dense.weight" in msg
    assert "classifier.dense.bias: checkpoint (7,), model (5,)" in msg


def test_original_pth_with_unknown_tensors_or_wrong_grid(tmp_path):
    cfg = tiny_config()
    sd = to_original_format(random_hf_model(seed=13, **cfg))
    sd["module.v.blocks.0.ls1.gamma"] = torch.ones(cfg["hidden_size"])
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(ValueError, match="unexpected: v.blocks.0.ls1.gamma"):
        ASTForAudioClassification.from_pretrained(tmp_path / "m.pth", config=ASTConfig(**cfg))
    with pytest.raises(ValueError, match="pass config=ASTConfig"):
        ASTForAudioClassification.from_pretrained(tmp_path / "m.pth")  # 5 x 10 grid: 50 patches are not rows of AST-Base's 12


def test_saved_config_is_transformers_config(tmp_path):
    cfg = tiny_config(id2label={0: "a", 1: "b"})
    ASTForAudioClassification(ASTConfig(**cfg)).save_pretrained(tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["architectures"] == ["ASTForAudioClassification"]
    hf_cfg = transformers.ASTConfig.from_pretrained(tmp_path)
    assert hf_cfg.id2label == {0: "a", 1: "b"} and hf_cfg.time_stride == cfg["time_stride"]


# ---- the released checkpoint (opt-in) -------------------------------------------------------------

REAL_CHECKPOINT = os.environ.get("AST_MIN_REAL_CHECKPOINT")  # dir of MIT/ast-finetuned-audioset-10-10-0.4593
REAL_SAMPLE = os.environ.get("AST_MIN_REAL_SAMPLE")  # transformers' integration sample (sample_audio.flac)


@pytest.mark.skipif(
    not (REAL_CHECKPOINT and REAL_SAMPLE and os.path.exists(REAL_CHECKPOINT) and os.path.exists(REAL_SAMPLE)),
    reason="opt-in: set AST_MIN_REAL_CHECKPOINT (local MIT/ast-finetuned-audioset-10-10-0.4593) and "
    "AST_MIN_REAL_SAMPLE (transformers' sample_audio.flac)",
)
def test_released_checkpoint_reproduces_transformers_integration_logits():
    from ast_min import ASTFeatureExtractor, load_audio

    model = ASTForAudioClassification.from_pretrained(REAL_CHECKPOINT, attn_implementation="sdpa")
    extractor = ASTFeatureExtractor.from_pretrained(REAL_CHECKPOINT)
    inputs = extractor(load_audio(REAL_SAMPLE), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(inputs.input_values).logits
    assert logits.shape == (1, 527)
    # transformers' tests/models/audio_spectrogram_transformer integration test values
    torch.testing.assert_close(logits[0, :3], torch.tensor([-0.8760, -7.0042, -8.6602]), atol=1e-4, rtol=0)


# ---- weights that would give confident nonsense -----------------------------------------------------


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: t.to(torch.int32), r"classifier\.dense\.weight \(torch\.int32\)"),
        (lambda t: t > 0, r"classifier\.dense\.weight \(torch\.bool\)"),
        (lambda t: t.index_fill(0, torch.tensor([0]), float("nan")), r"classifier\.dense\.weight \(\d+ NaN/Inf values\)"),
        (lambda t: t.index_fill(0, torch.tensor([1]), float("inf")), r"classifier\.dense\.weight \(\d+ NaN/Inf values\)"),
    ],
)
def test_non_floating_or_non_finite_weights_are_refused_by_name(tmp_path, damage, message):
    save_random_hf_checkpoint(tmp_path, tiny_config(), seed=14)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["classifier.dense.weight"] = damage(tensors["classifier.dense.weight"])
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"1 unusable tensors: {message}"):
        ASTForAudioClassification.from_pretrained(tmp_path)


# ---- save_pretrained is all-or-nothing ------------------------------------------------------------


class Interrupted(BaseException):
    """A stand-in for Ctrl-C or a killed process (BaseException, as KeyboardInterrupt is)."""


def _labelled_model(labels, seed):
    torch.manual_seed(seed)
    return ASTForAudioClassification(ASTConfig(**tiny_config(id2label=dict(enumerate(labels))))).eval()


def _logits(model_or_dir, x):
    model = model_or_dir if isinstance(model_or_dir, torch.nn.Module) else ASTForAudioClassification.from_pretrained(model_or_dir)
    with torch.no_grad():
        return model.config.id2label, model(x).logits


def _interrupt_call(monkeypatch, module, name, call_number):
    """Make the `call_number`-th call of module.name raise Interrupted (earlier calls run)."""
    real, calls = getattr(module, name), []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == call_number:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fake)


@pytest.mark.parametrize(
    "step",
    ["weights", "config", "first rename", "second rename", "removing the old copy"],
)
def test_an_interrupted_save_leaves_the_old_or_the_new_checkpoint_never_a_mixture(tmp_path, monkeypatch, step):
    import shutil

    from ast_min import checkpoint, files

    old, new = _labelled_model("abcde", seed=1), _labelled_model("vwxyz", seed=2)
    x = _x(tiny_config())
    old.save_pretrained(tmp_path / "ckpt")
    expected_old, expected_new = _logits(old, x), _logits(new, x)
    with monkeypatch.context() as patch:
        if step == "weights":
            _interrupt_call(patch, checkpoint, "save_file", 1)
        elif step == "config":
            _interrupt_call(patch, files, "write_json", 1)
        elif step in ("first rename", "second rename"):
            _interrupt_call(patch, os, "replace", 2 if step == "first rename" else 3)  # call 1 renames config.json's temp file
        else:
            _interrupt_call(patch, shutil, "rmtree", 1)
        with pytest.raises(Interrupted):
            new.save_pretrained(tmp_path / "ckpt")
    labels, logits = _logits(tmp_path / "ckpt", x)
    wanted = expected_new if step in ("second rename", "removing the old copy") else expected_old
    assert labels == wanted[0]
    torch.testing.assert_close(logits, wanted[1], rtol=0, atol=0)
    # reading deletes nothing (a leftover may be another process's save in progress); the next
    # save removes the interrupted one's leftovers
    new.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_reading_a_checkpoint_leaves_a_save_in_progress_alone(tmp_path):
    model = _labelled_model("ab", seed=0)
    model.save_pretrained(tmp_path / "ckpt")
    in_progress = tmp_path / "ckpt.tmp-0123abcd"  # what a concurrent save is filling
    model.save_pretrained(in_progress)
    ASTForAudioClassification.from_pretrained(tmp_path / "ckpt")
    assert sorted(os.listdir(in_progress)) == ["config.json", "model.safetensors"]


def test_saving_over_a_checkpoint_drops_its_extractor_settings_and_keeps_other_files(tmp_path):
    from ast_min import ASTFeatureExtractor

    directory = tmp_path / "ckpt"
    _labelled_model("abcde", seed=1).save_pretrained(directory)
    ASTFeatureExtractor(mean=-1.0, std=2.0).save_pretrained(directory)  # belongs to the first model
    (directory / "NOTES.md").write_text("my notes")
    _labelled_model("vwxyz", seed=2).save_pretrained(directory)
    assert sorted(os.listdir(directory)) == ["NOTES.md", "config.json", "model.safetensors"]
    assert (directory / "NOTES.md").read_text() == "my notes"
    # an extractor saved first, into a directory with no model yet, is this model's and stays
    ASTFeatureExtractor(mean=-3.0, std=2.0).save_pretrained(tmp_path / "fresh")
    _labelled_model("vwxyz", seed=2).save_pretrained(tmp_path / "fresh")
    assert ASTFeatureExtractor.from_pretrained(tmp_path / "fresh").mean == -3.0


def test_saving_and_loading_leave_a_users_look_alike_directories_alone(tmp_path):
    # Only the exact names an interrupted save leaves (`<dir>.old-`/`.tmp-` + 8 hex) are cleaned up.
    mine = [tmp_path / "ckpt.old-backup", tmp_path / "ckpt.tmp-notes", tmp_path / "ckpt.old-1234567"]
    for directory in mine:
        directory.mkdir()
        (directory / "keep.txt").write_text("mine")
    _labelled_model("ab", seed=0).save_pretrained(tmp_path / "ckpt")
    ASTForAudioClassification.from_pretrained(tmp_path / "ckpt")
    for directory in mine:
        assert (directory / "keep.txt").read_text() == "mine", f"{directory.name} was touched"


def test_a_folder_in_the_place_a_save_writes_first_is_refused_never_deleted(tmp_path):
    """Saving writes `<dir>.tmp` first and replaces a leftover of its own there; a user's folder of that
    name, or a link to another place holding the save's marker, is refused by name and left as it was."""
    from ast_min.files import SAVE_MARKER

    model = _labelled_model("ab", seed=0)
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt.tmp").mkdir()
    (tmp_path / "ckpt.tmp" / "keep.txt").write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / SAVE_MARKER).write_text("incomplete\n")  # looks like a save's leftover, behind a link
    (elsewhere / "keep.txt").write_text("mine too")
    for attempt in ("folder", "link"):
        if attempt == "link":
            import shutil

            shutil.rmtree(tmp_path / "ckpt.tmp")
            (tmp_path / "ckpt.tmp").symlink_to(elsewhere, target_is_directory=True)
        with pytest.raises(ValueError, match=r"ckpt\.tmp' is in the way: .*no ast-min save made it"):
            model.save_pretrained(tmp_path / "ckpt")
        if attempt == "folder":
            assert (tmp_path / "ckpt.tmp" / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(elsewhere)) == sorted([SAVE_MARKER, "keep.txt"]) and (tmp_path / "ckpt.tmp").is_symlink()
    assert ASTForAudioClassification.from_pretrained(tmp_path / "ckpt").config.id2label == {0: "a", 1: "b"}


@pytest.mark.parametrize("dtype", [torch.int8, "int8", "float", "half16"])
def test_a_dtype_that_is_not_a_floating_torch_dtype_is_refused_by_name(tmp_path, dtype):
    # "float" is torch.float32 and loads; the others are refused the same way, given as dtype or string
    _labelled_model("ab", seed=0).save_pretrained(tmp_path / "ckpt")
    if dtype == "float":
        assert ASTForAudioClassification.from_pretrained(tmp_path / "ckpt", dtype=dtype).dtype == torch.float32
        return
    with pytest.raises(ValueError, match="dtype must be a floating torch dtype"):
        ASTForAudioClassification.from_pretrained(tmp_path / "ckpt", dtype=dtype)


def test_saving_over_the_current_directory_is_refused_and_leaves_it_alone(tmp_path, monkeypatch):
    # the all-or-nothing swap would rename the working directory away: "." failed with
    # "PosixPath('.') has an empty name", and the absolute path half-succeeded with an error
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    model = _labelled_model("ab", seed=0)
    for directory in (".", "", str(tmp_path), str(tmp_path.parent)):
        with pytest.raises(ValueError, match="is the current directory or holds it"):
            model.save_pretrained(directory)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    assert os.getcwd() == str(tmp_path)
    from ast_min import checkpoint

    written = checkpoint.save_pretrained(model, "sub")  # a relative directory: relative paths back
    assert written == [os.path.join("sub", "config.json"), os.path.join("sub", "model.safetensors")]


def test_saving_onto_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        _labelled_model("ab", seed=0).save_pretrained(tmp_path / "file")


# ---- a config that does not describe its weights: refused before the model is built -------------------------------
def _craft(tmp_path, **changes):
    """A copy of the default model whose config.json is changed by `changes`, as a hostile download could be."""
    import shutil

    from ast_min.inference import DEFAULT_MODEL_DIR

    crafted = tmp_path / "crafted"
    shutil.copytree(DEFAULT_MODEL_DIR, crafted)
    config = json.loads((crafted / "config.json").read_text())
    (crafted / "config.json").write_text(json.dumps({**config, **changes}))
    return crafted


@pytest.mark.parametrize("changes, says", [
    (dict(num_hidden_layers=1_000_000), "num_hidden_layers is 1000000, but the weights hold 2 layers"),
    (dict(hidden_size=4096), "hidden_size is 4096, but audio_spectrogram_transformer.embeddings.cls_token (1, 1, 64) holds 64"),
    (dict(intermediate_size=10**9), "intermediate_size is 1000000000, but audio_spectrogram_transformer.encoder.layer.0."
                                    "intermediate.dense.weight (256, 64) holds 256"),
    (dict(max_length=10**8), "num_mel_bins, max_length, patch_size and the strides give 49999997 positions, but "
                             "audio_spectrogram_transformer.embeddings.position_embeddings (1, 62, 64) holds 62"),
    (dict(patch_size=2), "patch_size is 2, but audio_spectrogram_transformer.embeddings.patch_embeddings.projection.weight "
                         "(64, 1, 16, 16) holds 16"),
])  # fmt: skip
@pytest.mark.parametrize("cls", [ASTForAudioClassification, ASTModel])
def test_a_config_that_does_not_describe_its_weights_is_refused_by_field(tmp_path, monkeypatch, changes, says, cls):
    crafted = _craft(tmp_path, **changes)

    def never(*args, **kwargs):
        raise AssertionError("a model was built before the config was compared with the weights")

    monkeypatch.setattr(cls, "__init__", never)
    with pytest.raises(ValueError) as err:
        cls.from_pretrained(crafted)
    assert str(err.value).startswith(f"'{crafted / 'config.json'}' does not describe the weights in "
                                     f"'{crafted / 'model.safetensors'}': {says}"), str(err.value)


def test_more_parameters_than_the_file_holds_is_refused_whatever_the_names(tmp_path, monkeypatch):
    """Weights whose names carry no size ast-min knows: the parameter count still bounds what is built."""
    cfg = tiny_config()
    ASTConfig(**cfg).save_pretrained(tmp_path)
    save_file({"some.tensor": torch.zeros(1000)}, tmp_path / "model.safetensors")
    config = ASTConfig(**{**cfg, "num_hidden_layers": 1})
    monkeypatch.setattr(ASTModel, "__init__", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(ValueError, match=r"num_hidden_layers is 1, but the weights hold no transformer layers"):
        ASTModel.from_pretrained(tmp_path, config=config)
    from ast_min.checkpoint import check_config_fits_weights

    shapes = {f"blocks.{i}.x": (1,) for i in range(2)}  # the layers are there, the numbers are not
    with pytest.raises(ValueError, match=r"its encoder has [\d,]+ weights, but the file holds 2 numbers"):
        check_config_fits_weights(ASTConfig(**{**cfg, "num_hidden_layers": 2}), shapes, "c", "w")


@settings(max_examples=25)
@given(hidden=st.integers(1, 24), heads=st.integers(1, 4), mlp=st.integers(1, 40), layers=st.integers(0, 3),
       patch=st.integers(2, 8), mel=st.integers(8, 24), frames=st.integers(8, 40), labels=st.integers(1, 9),
       qkv_bias=st.booleans(), head=st.booleans())
def test_the_parameter_count_is_the_built_models(hidden, heads, mlp, layers, patch, mel, frames, labels, qkv_bias, head):
    """parameter_count is arithmetic; torch's modules, built, are the reference."""
    from ast_min.checkpoint import parameter_count

    config = ASTConfig(hidden_size=hidden * heads, num_attention_heads=heads, intermediate_size=mlp,
                       num_hidden_layers=max(layers, 1), patch_size=patch, frequency_stride=max(patch // 2, 1),
                       time_stride=patch, num_mel_bins=max(mel, patch), max_length=max(frames, patch),
                       num_labels=labels, qkv_bias=qkv_bias)  # fmt: skip
    model = (ASTForAudioClassification if head else ASTModel)(config)
    assert parameter_count(config, with_head=head) == sum(p.numel() for p in model.parameters())


CRAFTED_CHILD = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from ast_min.cli import main
sys.exit(main(["classify", sys.argv[2], "--checkpoint", sys.argv[3]]))
"""


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.exists("/proc/self/status"), reason="needs Linux's RLIMIT_AS")
@pytest.mark.parametrize("changes, says", [(dict(num_hidden_layers=1_000_000), "num_hidden_layers is 1000000"),
                                           (dict(hidden_size=4096), "hidden_size is 4096")])
def test_a_crafted_config_is_refused_within_a_small_address_space(tmp_path, changes, says):
    """The same refusal in a process that may map at most 1.5 GiB beyond what importing torch costs.

    Building either model first needs far more (a million blocks of Python modules; two 4096-wide
    blocks and their 4096 x 4096 matrices, about 2 GB): without the check the child dies of
    MemoryError (printed as "out of memory") or is killed, never with the config's message.
    """
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    crafted = _craft(tmp_path, **changes)
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    probe = subprocess.run([sys.executable, "-c", "import ast_min.cli, ast_min.classify, resource;"
                            "print(open('/proc/self/status').read())"], capture_output=True, text=True, check=True)
    baseline = int(next(line.split()[1] for line in probe.stdout.splitlines() if line.startswith("VmPeak"))) * 1024
    limit = baseline + 1536 * 2**20
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}  # threads' arenas count against the limit
    child = subprocess.run([sys.executable, "-c", CRAFTED_CHILD, str(limit), str(tmp_path / "a.wav"), str(crafted)],
                           capture_output=True, text=True, timeout=300, env=env)
    assert child.returncode == 2, (child.returncode, child.stderr[-2000:])
    assert child.stderr.startswith(f"ast-min classify: error: '{crafted / 'config.json'}' does not describe the weights "
                                   f"in '{crafted / 'model.safetensors'}': {says}"), child.stderr[-2000:]


def test_a_crafted_label_count_is_refused_before_names_are_made_for_it(tmp_path):
    crafted = _craft(tmp_path, num_labels=10**8)  # differs from id2label's count: transformers would generate names
    with pytest.raises(ValueError, match=r"config field 'num_labels' is 100000000, more than the 1048576 labels"):
        ASTConfig.from_pretrained(crafted)
