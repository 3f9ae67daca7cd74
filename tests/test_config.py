"""`ast_min.ASTConfig` against `transformers.ASTConfig`: the same fields and defaults, config.json read and
written both ways, and the derived patch grid equal to transformers' own arithmetic
(`ASTEmbeddings.get_shape`).
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import ASTConfig

FIELDS = [
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps", "patch_size",
    "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins", "num_labels", "problem_type",
]


def hf_config(**kwargs):
    from transformers import ASTConfig as HFConfig

    return HFConfig(**kwargs)


def assert_same(ours, theirs):
    for name in FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert {int(k): v for k, v in theirs.id2label.items()} == ours.id2label
    # transformers 5 leaves label2id None (and writes null) when only id2label is given
    if theirs.label2id is not None:
        assert dict(theirs.label2id) == ours.label2id


def test_defaults_equal_transformers():
    assert_same(ASTConfig(), hf_config())


configs = st.fixed_dictionaries(
    {
        "num_attention_heads": st.integers(1, 8),
        "num_hidden_layers": st.integers(1, 24),
        "intermediate_size": st.integers(1, 4096),
        "hidden_act": st.sampled_from(["gelu", "relu", "gelu_new"]),
        "hidden_dropout_prob": st.floats(0, 0.5),
        "attention_probs_dropout_prob": st.floats(0, 0.5),
        "initializer_range": st.floats(1e-3, 0.1),
        "layer_norm_eps": st.sampled_from([1e-12, 1e-6, 1e-5]),
        "patch_size": st.integers(4, 16),
        "qkv_bias": st.booleans(),
        "frequency_stride": st.integers(1, 16),
        "time_stride": st.integers(1, 16),
        "max_length": st.integers(16, 2048),
        "num_mel_bins": st.integers(16, 128),
        "problem_type": st.sampled_from([None, "multi_label_classification", "single_label_classification"]),
    }
)


@given(options=configs, head_dim=st.integers(1, 96), labels=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True))
@settings(max_examples=25)
def test_config_json_round_trips_both_ways(tmp_path_factory, options, head_dim, labels):
    options = dict(options, hidden_size=head_dim * options["num_attention_heads"])
    if options["problem_type"] == "single_label_classification" and len(labels) == 1:
        labels = labels + ["other"]  # transformers refuses a one-label softmax head
    id2label = dict(enumerate(labels))
    directory = tmp_path_factory.mktemp("config")
    # ours -> config.json -> transformers
    ASTConfig(**options, id2label=id2label).save_pretrained(directory / "ours")
    theirs = hf_config().from_pretrained(directory / "ours")
    assert_same(ASTConfig(**options, id2label=id2label), theirs)
    # transformers -> config.json -> ours
    hf_config(**options, id2label=id2label).save_pretrained(directory / "theirs")
    ours = ASTConfig.from_pretrained(directory / "theirs")
    assert_same(ours, hf_config().from_pretrained(directory / "theirs"))
    assert ours.to_dict()["model_type"] == json.loads((directory / "theirs" / "config.json").read_text())["model_type"]


@given(
    num_mel_bins=st.integers(16, 256), max_length=st.integers(16, 4096), patch_size=st.integers(1, 16),
    frequency_stride=st.integers(1, 16), time_stride=st.integers(1, 16),
)
@settings(max_examples=50)
def test_patch_grid_equals_transformers_get_shape(num_mel_bins, max_length, patch_size, frequency_stride, time_stride):
    from transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer import ASTEmbeddings

    options = dict(num_mel_bins=num_mel_bins, max_length=max_length, patch_size=patch_size,
                   frequency_stride=frequency_stride, time_stride=time_stride)
    ours = ASTConfig(**options)
    # get_shape only reads the config: call it unbound rather than building the embeddings' weights.
    f, t = ASTEmbeddings.get_shape(None, hf_config(**options))
    assert (ours.frequency_out_dimension, ours.time_out_dimension) == (f, t)
    assert ours.num_patches == f * t and ours.sequence_length == f * t + 2


def test_ast_base_grid_is_12_by_101_with_1214_tokens():
    config = ASTConfig()
    assert (config.frequency_out_dimension, config.time_out_dimension, config.sequence_length) == (12, 101, 1214)
    assert config.head_dim == 64
    assert ASTConfig(max_length=512).time_out_dimension == 50  # ESC-50's recipe length


def test_labels_resolve_like_transformers():
    assert ASTConfig(num_labels=5).id2label == {i: f"LABEL_{i}" for i in range(5)}
    assert ASTConfig(label2id={"dog": 1, "cat": 0}).id2label == {0: "cat", 1: "dog"}
    assert {int(k): v for k, v in hf_config(num_labels=5).id2label.items()} == ASTConfig(num_labels=5).id2label
    assert ASTConfig().replace(max_length=128, num_labels=3).num_labels == 3


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_mel_bins=8), "smaller than one 16 x 16 patch"),
        (dict(problem_type="ranking"), "unknown problem_type"),
        (dict(num_labels=3, id2label={0: "a"}), "disagrees"),
    ],
)
def test_bad_configs_raise(options, message):
    with pytest.raises(ValueError, match=message):
        ASTConfig(**options)


def test_head_count_is_checked_when_a_model_is_built_as_in_transformers():
    from ast_min import ASTModel

    config = ASTConfig(hidden_size=100, num_attention_heads=12)  # transformers accepts this config too
    hf_config(hidden_size=100, num_attention_heads=12)
    with pytest.raises(ValueError, match="hidden_size 100 is not divisible by num_attention_heads 12"):
        ASTModel(config)


def test_bad_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ASTConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        ASTConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="not an Audio Spectrogram Transformer"):
        ASTConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        ([{"hidden_size": 768}], "holds a JSON list, not an object of config settings"),
        ({"num_attention_heads": 0}, "'num_attention_heads' must be at least 1, got 0"),
        ({"time_stride": 0}, "'time_stride' must be at least 1, got 0"),
        ({"hidden_size": "768"}, "'hidden_size' must be an integer, got str '768'"),
        ({"max_length": 1024.0}, "'max_length' must be an integer, got float"),
        ({"layer_norm_eps": "1e-12"}, "'layer_norm_eps' must be a number, got str"),
        ({"hidden_dropout_prob": 1.5}, "'hidden_dropout_prob' is a probability"),
        ({"qkv_bias": "true"}, "'qkv_bias' must be true or false"),
        ({"num_labels": "3"}, "'num_labels' must be a positive integer"),
        ({"id2label": ["a", "b"]}, "'id2label' must be a mapping"),
    ],
)
def test_bad_config_files_get_an_error_naming_the_field_and_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as err:
        ASTConfig.from_pretrained(tmp_path)
    assert "config.json" in str(err.value)
