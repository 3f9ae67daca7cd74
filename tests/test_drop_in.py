"""Drop-in use from transformers code: what ported code and transformers' own tools touch.

The numbers are tested elsewhere (test_model, test_checkpoint, test_features*); here the surface
around them: outputs that read like transformers' ModelOutput, `from_pretrained`'s fine-tuning
arguments, config and extractor settings files, hub ids, gradient checkpointing, and two real
clients, transformers' `Trainer` and `pipeline("audio-classification")`. References are
transformers' own classes and tools, run on the same tiny checkpoints.
"""

import json
import pickle

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import ast_min
from ast_min import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ASTModel
from hf_reference import save_random_hf_checkpoint, tiny_config


def _x(cfg: ASTConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, cfg.max_length, cfg.num_mel_bins, generator=torch.Generator().manual_seed(seed))


def _pair(tmp_path, **overrides):
    """The same random checkpoint loaded by ast-min and by transformers."""
    save_random_hf_checkpoint(tmp_path, tiny_config(**overrides), seed=3)
    ours = ASTForAudioClassification.from_pretrained(tmp_path, attn_implementation="eager")
    theirs = transformers.ASTForAudioClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    return ours, theirs


# ---- outputs --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("extras", [{}, dict(output_hidden_states=True, output_attentions=True)])
def test_classifier_outputs_index_like_transformers(tmp_path, with_labels, extras):
    ours, theirs = _pair(tmp_path)
    x = _x(ours.config)
    labels = {"labels": torch.tensor([0, 3])} if with_labels else {}
    with torch.no_grad():
        a, b = ours(x, **labels, **extras), theirs(x, **labels, **extras)
        a_tuple, b_tuple = ours(x, **labels, **extras, return_dict=False), theirs(x, **labels, **extras, return_dict=False)
    assert list(a.keys()) == list(b.keys()) and len(a) == len(b)
    assert isinstance(a_tuple, tuple) and len(a_tuple) == len(b_tuple) == len(b.to_tuple())
    for i in range(len(b)):  # positions, tuples and keys hold the same values as transformers'
        torch.testing.assert_close(a[i], b[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a_tuple[i], b_tuple[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.to_tuple()[i], b.to_tuple()[i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["logits"], b["logits"], atol=1e-5, rtol=1e-5)
    assert ("loss" in a) == with_labels
    assert ("hidden_states" in a) == bool(extras)


def test_encoder_outputs_index_like_transformers(tmp_path):
    save_random_hf_checkpoint(tmp_path, tiny_config(), seed=5, head=False)
    ours = ASTModel.from_pretrained(tmp_path)
    theirs = transformers.ASTModel.from_pretrained(tmp_path).eval()
    x = _x(ours.config)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert list(a.keys()) == list(b.keys())
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=1e-5)  # pooler_output
    first, *_ = ours(x, return_dict=False)
    torch.testing.assert_close(first, b.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_a_key_assigned_to_an_output_is_kept_as_transformers_keeps_it():
    from transformers.modeling_outputs import SequenceClassifierOutput

    from ast_min.compat import ASTClassificationOutput

    logits, extra, new_logits = torch.ones(2, 3), torch.zeros(2), torch.full((2, 3), 2.0)
    ours, theirs = ASTClassificationOutput(logits=logits), SequenceClassifierOutput(logits=logits)
    for out in (ours, theirs):
        out["extra"] = extra
        out["logits"] = new_logits  # rewriting a field keeps the caller's key in its place
    assert list(ours.keys()) == list(theirs.keys()) == ["logits", "extra"]
    assert ours.extra is ours["extra"] is extra and theirs.extra is extra
    assert len(ours.to_tuple()) == len(theirs.to_tuple()) == 2
    assert ours[1] is extra and theirs[1] is extra and ours[0] is new_logits


def test_an_output_rebuilt_from_its_items_equals_transformers_rebuilt_one():
    """accelerate's mixed precision (Trainer with bf16/fp16) converts every forward pass's output with
    `type(out)({key: ...})`, DataParallel's gather with `type(out)((key, ...) for key in out)`, and
    pickle sets the keys before the attributes."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    from ast_min.compat import ASTClassificationOutput

    logits, loss, extra = torch.ones(2, 3, dtype=torch.bfloat16), torch.tensor(0.5), torch.zeros(2)
    ours, theirs = ASTClassificationOutput(logits=logits, loss=loss), SequenceClassifierOutput(logits=logits, loss=loss)
    for out in (ours, theirs):
        out["extra"] = extra
    rebuilt = {type(out).__name__: type(out)({k: v for k, v in out.items()}) for out in (ours, theirs)}
    paired = {type(out).__name__: type(out)((k, out[k]) for k in out) for out in (ours, theirs)}
    for ours_again, theirs_again in (rebuilt.values(), paired.values()):
        assert type(ours_again) is ASTClassificationOutput
        assert list(ours_again.keys()) == list(theirs_again.keys()) == ["loss", "logits", "extra"]
        assert ours_again.logits is theirs_again.logits is logits and ours_again[0] is loss
    again = {type(out).__name__: pickle.loads(pickle.dumps(out)) for out in (ours, theirs)}  # torch.save, workers
    ours_again, theirs_again = again.values()
    assert type(ours_again) is ASTClassificationOutput and list(ours_again.keys()) == list(theirs_again.keys())
    torch.testing.assert_close(ours_again.logits, theirs_again.logits, rtol=0, atol=0)
    accelerate = pytest.importorskip("accelerate")
    converted = accelerate.utils.convert_to_fp32(ours)
    assert type(converted) is ASTClassificationOutput and converted.logits.dtype == torch.float32
    assert list(converted.keys()) == list(accelerate.utils.convert_to_fp32(theirs).keys())


def test_output_options_set_on_the_config_are_honoured(tmp_path):
    ours, theirs = _pair(tmp_path)
    for model in (ours, theirs):
        model.config.output_hidden_states = True
        model.config.output_attentions = True
    x = _x(ours.config)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert len(a.hidden_states) == len(b.hidden_states) == ours.config.num_hidden_layers + 1
    torch.testing.assert_close(a.attentions[-1], b.attentions[-1], atol=1e-5, rtol=1e-5)
    assert ours(x, output_hidden_states=False).hidden_states is None  # the call's value wins


# ---- from_pretrained's fine-tuning arguments --------------------------------------------------------------------------
def test_num_labels_with_ignore_mismatched_sizes_starts_a_fresh_head_as_transformers(tmp_path):
    save_random_hf_checkpoint(tmp_path, tiny_config(), seed=6)  # a 5-label head
    ours = ASTForAudioClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    theirs = transformers.ASTForAudioClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert ours.config.num_labels == theirs.config.num_labels == 3
    assert ours.config.id2label == {int(k): v for k, v in theirs.config.id2label.items()}
    # the encoder is the checkpoint's in both; only the head is new
    torch.testing.assert_close(
        ours.audio_spectrogram_transformer.embeddings.position_embeddings,
        theirs.audio_spectrogram_transformer.embeddings.position_embeddings,
    )
    assert ours.classifier.dense.weight.shape == (3, ours.config.hidden_size)
    with pytest.raises(ValueError, match="ignore_mismatched_sizes=True"):
        ASTForAudioClassification.from_pretrained(tmp_path, num_labels=3)
    same = ASTForAudioClassification.from_pretrained(tmp_path, num_labels=5)  # the stored count keeps the head
    full = ASTForAudioClassification.from_pretrained(tmp_path)
    assert torch.equal(same.classifier.dense.weight, full.classifier.dense.weight)


@pytest.mark.parametrize("dtype", [torch.bfloat16, "float16", "auto"])
def test_dtype_argument_casts_the_weights(tmp_path, dtype):
    save_random_hf_checkpoint(tmp_path, tiny_config(), seed=7)
    ours = ASTForAudioClassification.from_pretrained(tmp_path, dtype=dtype)
    theirs = transformers.ASTForAudioClassification.from_pretrained(tmp_path, dtype=dtype)
    assert ours.dtype == theirs.dtype
    assert ours.device == theirs.device == torch.device("cpu")
    assert ours.num_parameters() == theirs.num_parameters()
    assert ours.num_parameters(only_trainable=True) == theirs.num_parameters(only_trainable=True)


# ---- config ------------------------------------------------------------------------------------------------------------
def test_config_takes_general_arguments_and_settable_label_count_like_transformers(tmp_path):
    general = dict(is_decoder=False, attn_implementation="sdpa", tie_word_embeddings=False, hidden_size=32)
    ours, theirs = ASTConfig(**general), transformers.ASTConfig(**general)
    assert ours.hidden_size == theirs.hidden_size == 32 and ours.is_decoder is False
    ours.num_labels = theirs.num_labels = 4
    assert ours.id2label == {int(k): v for k, v in theirs.id2label.items()}
    # JSON round trips: ours -> transformers and transformers -> ours
    ours.to_json_file(tmp_path / "ours.json")
    back = transformers.ASTConfig.from_json_file(tmp_path / "ours.json")
    assert back.num_labels == 4 and back.hidden_size == 32
    theirs.to_json_file(tmp_path / "theirs.json")
    assert ASTConfig.from_json_file(tmp_path / "theirs.json").id2label == ours.id2label
    assert json.loads(ours.to_json_string())["hidden_size"] == 32


def test_output_settings_assigned_to_a_config_are_saved_like_transformers(tmp_path):
    ours, theirs = ASTConfig(), transformers.ASTConfig()
    for config, directory in ((ours, tmp_path / "ours"), (theirs, tmp_path / "theirs")):
        config.output_hidden_states = True  # after construction, as ported code sets it
        config.save_pretrained(directory)
    assert transformers.ASTConfig.from_pretrained(tmp_path / "ours").output_hidden_states is True
    assert ASTConfig.from_pretrained(tmp_path / "ours").output_hidden_states is True
    assert ASTConfig.from_pretrained(tmp_path / "theirs").output_hidden_states is True
    assert ours.replace(max_length=512).output_hidden_states is True  # what from_pretrained(max_length=) builds
    assert "output_hidden_states" not in ASTConfig().to_dict()  # an untouched config's file is unchanged


# ---- extractor ----------------------------------------------------------------------------------------------------------
def test_extractor_settings_files_and_return_values_like_transformers(tmp_path):
    ours = ASTFeatureExtractor(num_mel_bins=64, max_length=100, mean=-3.0, std=2.0)
    theirs = transformers.ASTFeatureExtractor(num_mel_bins=64, max_length=100, mean=-3.0, std=2.0)
    written = ours.save_pretrained(tmp_path / "ours")
    assert isinstance(written, list) and written == [str(tmp_path / "ours" / "preprocessor_config.json")]
    assert len(theirs.save_pretrained(tmp_path / "theirs")) == len(written)
    ours.to_json_file(tmp_path / "o.json")
    assert transformers.ASTFeatureExtractor.from_json_file(tmp_path / "o.json").mean == -3.0
    theirs.to_json_file(tmp_path / "t.json")
    assert ASTFeatureExtractor.from_json_file(tmp_path / "t.json").num_mel_bins == 64
    assert json.loads(ours.to_json_string())["std"] == 2.0


def test_return_attention_mask_is_accepted_and_returns_what_transformers_does():
    clip = np.random.default_rng(0).standard_normal(3000).astype(np.float32)
    ours = ASTFeatureExtractor(max_length=50, return_attention_mask=True)
    theirs = transformers.ASTFeatureExtractor(max_length=50, return_attention_mask=True)
    a = ours(clip, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    b = theirs(clip, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    assert sorted(a.keys()) == sorted(b.keys())


def test_batch_feature_to_moves_and_casts_like_transformers():
    clip = np.random.default_rng(1).standard_normal(3000).astype(np.float32)
    a = ASTFeatureExtractor(max_length=50)(clip, return_tensors="pt")
    b = transformers.ASTFeatureExtractor(max_length=50)(clip, return_tensors="pt")
    assert a.to(torch.float16) is a and a.input_values.dtype == b.to(torch.float16).input_values.dtype
    assert a.to("cpu").input_values.device == b.to("cpu").input_values.device


def _pad_outcome(extractor, features, **options):
    """What pad returns (key -> arrays, or a list of arrays for unequal rows), or the error's type."""
    try:
        out = extractor.pad(features, **options)
    except ValueError:
        return ValueError
    result = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            value = value.numpy()
        result[key] = value if isinstance(value, np.ndarray) else [np.asarray(v) for v in value]
    return result


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=4),
    frames=st.booleans(),
    padding=st.sampled_from([True, False, "longest", "max_length", "do_not_pad"]),
    max_length=st.one_of(st.none(), st.integers(1, 40)),
    truncation=st.booleans(),
    multiple=st.sampled_from([None, 4, 10]),
    mask=st.sampled_from([None, True, False]),
    tensors=st.sampled_from([None, "np", "pt"]),
    side=st.sampled_from(["right", "left"]),
)
def test_pad_equals_transformers_sequence_feature_extractor_pad(lengths, frames, padding, max_length, truncation,
                                                                multiple, mask, tensors, side):  # fmt: skip
    """Sequences of samples (T_i,) or of feature rows (T_i, F), padded by ast-min and by transformers:
    the same arrays (or lists, for rows left unequal), the same masks, or a ValueError from both."""
    rng = np.random.default_rng(sum(lengths))
    rows = [rng.standard_normal((n, 4) if frames else n) for n in lengths]  # float64: both cast to float32
    kwargs = dict(feature_size=4 if frames else 1, padding_value=0.5, padding_side=side)
    options = dict(padding=padding, max_length=max_length, truncation=truncation, pad_to_multiple_of=multiple,
                   return_attention_mask=mask, return_tensors=tensors)  # fmt: skip
    ours = _pad_outcome(ASTFeatureExtractor(**kwargs), {"input_values": rows}, **options)
    theirs = _pad_outcome(transformers.ASTFeatureExtractor(**kwargs), {"input_values": [r.tolist() for r in rows]}, **options)
    if theirs is ValueError or ours is ValueError:
        assert ours is theirs
        return
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert type(ours[key]) is type(theirs[key]), key
        for a, b in zip(ours[key], theirs[key]):
            np.testing.assert_array_equal(a, b)
            assert np.asarray(a).dtype == np.asarray(b).dtype, key


# ---- hub ids and subfolders ------------------------------------------------------------------------------------------------
def test_hub_ids_and_subfolders_resolve_the_same_way_for_config_extractor_and_model(tmp_path, monkeypatch):
    import huggingface_hub

    repo = tmp_path / "snapshot"
    save_random_hf_checkpoint(repo / "fine-tuned", tiny_config(), seed=8)
    ASTFeatureExtractor(max_length=64, num_mel_bins=32, mean=-2.5).save_pretrained(repo / "fine-tuned")
    calls, patterns = [], set()

    def snapshot_download(repo_id, allow_patterns=None, local_files_only=False, **options):
        calls.append((repo_id, local_files_only))
        patterns.update(allow_patterns)
        if not local_files_only:  # offline: only the local hub cache answers
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return str(repo)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    config = ASTConfig.from_pretrained("someone/ast", subfolder="fine-tuned")
    extractor = ASTFeatureExtractor.from_pretrained("someone/ast", subfolder="fine-tuned")
    model = ASTForAudioClassification.from_pretrained("someone/ast", subfolder="fine-tuned")
    assert config == model.config and extractor.mean == -2.5
    assert calls == [("someone/ast", False), ("someone/ast", True)] * 3
    assert patterns and all(p.startswith("fine-tuned/") for p in patterns)  # only the subfolder is fetched
    with pytest.raises(FileNotFoundError, match="no subfolder 'missing'"):
        ASTConfig.from_pretrained("someone/ast", subfolder="missing")


# ---- gradient checkpointing ---------------------------------------------------------------------------------------------------
def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_gradients(monkeypatch):
    from ast_min import model as model_module

    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_config(hidden_dropout_prob=0.0))).train()
    x, labels = _x(model.config), torch.tensor([1, 4])

    def gradients():
        model.zero_grad()
        model(x, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    calls, block_forward = [], model_module.Block.forward

    def counted(self, *args):  # module hooks do not fire during recomputation, so count the calls themselves
        calls.append(1)
        return block_forward(self, *args)

    monkeypatch.setattr(model_module.Block, "forward", counted)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    recomputed = gradients()
    # each block runs twice: in the forward, and again in the backward (that is what saves memory)
    assert len(calls) == 2 * model.config.num_hidden_layers
    for name in plain:  # recomputing runs the same operations on the same values: equal up to float rounding
        torch.testing.assert_close(recomputed[name], plain[name], atol=1e-6, rtol=1e-5)
    model.gradient_checkpointing_disable()
    calls.clear()
    gradients()
    assert len(calls) == model.config.num_hidden_layers


# ---- real clients -----------------------------------------------------------------------------------------------------------
def test_transformers_trainer_fine_tunes_an_ast_min_model(tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (pip install accelerate)")
    torch.manual_seed(0)
    config = ASTConfig(**tiny_config(num_labels=2))
    model = ASTForAudioClassification(config)
    x = _x(config, batch=16, seed=1)
    y = torch.arange(16) % 2
    x[y == 1] += 0.5  # a learnable difference between the classes

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {"input_values": x[i], "labels": y[i]}

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, num_train_epochs=3, learning_rate=1e-3,
        logging_steps=1, save_strategy="epoch", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Clips(),
                                   callbacks=[ast_min.SaveConfigCallback()])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < losses[0], losses
    predictions = trainer.predict(Clips()).predictions
    assert predictions.shape == (16, 2)
    trainer.save_model()  # into output_dir, as transformers' fine-tuning guide does (push_to_hub too)
    model.eval()
    back = ASTForAudioClassification.from_pretrained(tmp_path / "run")
    assert back.config == config
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, model(x).logits, rtol=0, atol=0)
        np.testing.assert_allclose(predictions, model(x).logits.numpy(), rtol=1e-5, atol=1e-5)
    # Each epoch's checkpoint-N folder reloads as it is and holds that epoch's weights (the last is the final model).
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "run").glob("checkpoint-*"))
    assert steps == [2, 4, 6], steps
    last = ASTForAudioClassification.from_pretrained(tmp_path / "run" / "checkpoint-6").eval()
    first = ASTForAudioClassification.from_pretrained(tmp_path / "run" / "checkpoint-2").eval()
    with torch.no_grad():
        torch.testing.assert_close(last(x).logits, model(x).logits, rtol=0, atol=0)
        assert not torch.equal(first(x).logits, last(x).logits)


def test_a_trainer_folder_without_config_names_the_callback(tmp_path):
    config = ASTConfig(**tiny_config(num_labels=2))
    safetensors.torch.save_file(ASTForAudioClassification(config).state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="no config.json.*SaveConfigCallback"):
        ASTForAudioClassification.from_pretrained(tmp_path)
    assert ASTForAudioClassification.from_pretrained(tmp_path, config=config).config == config


def test_get_text_config_is_the_config_itself_as_in_transformers():
    ours = ASTConfig(**tiny_config())
    theirs = transformers.ASTConfig(**tiny_config())
    assert theirs.get_text_config() is theirs  # the behaviour being copied
    assert ours.get_text_config() is ours and ours.get_text_config(decoder=True) is ours


def test_transformers_pipeline_serves_an_ast_min_checkpoint_with_ast_min_scores(tmp_path):
    from ast_min.classify import Classifier

    torch.manual_seed(0)
    config = ASTConfig(**tiny_config(id2label={0: "dog", 1: "cat", 2: "bird"}, problem_type="single_label_classification"))
    ASTForAudioClassification(config).save_pretrained(tmp_path)
    extractor = ASTFeatureExtractor(max_length=config.max_length, num_mel_bins=config.num_mel_bins, mean=-5.0, std=3.0)
    extractor.save_pretrained(tmp_path)
    clip = (0.1 * np.random.default_rng(3).standard_normal(12_000)).astype(np.float32)
    served = transformers.pipeline("audio-classification", model=str(tmp_path), feature_extractor=extractor)
    theirs = {r["label"]: r["score"] for r in served(clip, top_k=3)}
    ours_classifier = Classifier.load(str(tmp_path), device="cpu", activation="softmax")
    scores = ours_classifier.scores([clip], batch_size=1)[0]
    ours = {config.id2label[i]: float(s) for i, s in enumerate(scores)}
    assert ours.keys() == theirs.keys()
    # transformers' model and ast-min's on the same float32 features: reordering-level differences
    for label in ours:
        assert abs(ours[label] - theirs[label]) < 1e-5, (label, ours[label], theirs[label])


def _top_level_names(tree) -> tuple[set[str], set[str]]:
    """(names a module defines: def, class, assignment; names it imports), at its top level."""
    import ast

    defined, imported = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
    return defined, imported


def test_each_public_name_is_defined_where_it_is_listed_and_no_old_place_serves_it():
    """Callers import a name from the module that defines it: a module's __all__ lists only its own
    names (a package's __init__ is its public face and may gather its modules' names), and the
    places names were once re-exported from no longer serve them."""
    import ast
    import importlib
    from pathlib import Path

    root = Path(ast_min.__file__).parent
    checked = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        listed = [n for n in tree.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
        if path.name == "__init__.py" or not listed:
            continue
        defined, imported = _top_level_names(tree)
        names = ast.literal_eval(listed[0].value)
        foreign = sorted(set(names) - defined)
        assert not foreign, f"{path.relative_to(root)} lists names it does not define in __all__: {foreign}"
        assert not set(names) & imported, f"{path.relative_to(root)} re-exports {sorted(set(names) & imported)}"
        checked.append(path.name)
    assert {"model.py", "config.py"} <= set(checked), checked  # the rule was applied, not skipped

    # where the names live
    from ast_min.checkpoint import adapt_position_embeddings
    from ast_min.extractor import BatchFeature, fbank
    from ast_min.files import resolve

    assert ast_min.BatchFeature is BatchFeature and callable(fbank) and callable(resolve)
    assert callable(adapt_position_embeddings)
    # and not where they were re-exported from
    features, model, checkpoint = (importlib.import_module(f"ast_min.{m}") for m in ("features", "model", "checkpoint"))
    for module, name in [(features, "fbank"), (features, "BatchFeature"), (features, "ASTFeatureExtractor"),
                         (features, "compute_norm_stats"), (features, "extract_input_values"),
                         (model, "adapt_position_embeddings"), (checkpoint, "resolve"), (checkpoint, "expand")]:
        assert not hasattr(module, name), f"{module.__name__}.{name} still re-exports a name defined elsewhere"
    for gone in ("ast_min.features_cli",):  # moved to ast_min.commands
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)
