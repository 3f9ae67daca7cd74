"""The AST configuration: every field and default of `transformers.ASTConfig`.

`config.json` is read and written in the same format as transformers, so a checkpoint directory is
interchangeable between the two libraries. Sizes the model needs (the patch grid, the sequence
length) are derived here by arithmetic, never by running a dummy forward pass.

Shape legend: F mel bins (`num_mel_bins`), T frames (`max_length`), L tokens, D hidden size.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ast_min import compat, files

MODEL_TYPE = "audio-spectrogram-transformer"
CONFIG_FILE = "config.json"
# transformers' general settings with a default on the class: written when a config sets them
OUTPUT_SETTINGS = ("output_hidden_states", "output_attentions", "return_dict")
# keys transformers writes that describe the file, not the model: read and dropped
BOOKKEEPING_KEYS = ("model_type", "architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path")


@dataclass(eq=False, repr=False)
class ASTConfig(compat.JsonSettings):
    """Hyper-parameters of an Audio Spectrogram Transformer; defaults are AST-Base (the paper's).

    The defaults equal `transformers.ASTConfig()`: a ViT/DeiT-B encoder over 16 x 16 patches cut
    with stride 10 from a 1024-frame x 128-bin log-mel spectrogram. The label set is given as
    `id2label`, `label2id` or `num_labels`, as in transformers; `id2label` is what is stored. Other
    keyword arguments (transformers' general ones: `output_hidden_states`, `is_decoder`,
    `attn_implementation`, ...) are kept as attributes and written back to config.json.
    """

    hidden_size: int = 768  # D
    num_hidden_layers: int = 12
    num_attention_heads: int = 12  # H; head dim Dh = D / H (checked when a model is built, as transformers)
    intermediate_size: int = 3072  # MLP width, 4 * D
    hidden_act: str = "gelu"  # the exact (erf) GELU, as in BERT/ViT
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12  # BERT's value, kept by the checkpoints
    patch_size: int = 16
    qkv_bias: bool = True
    frequency_stride: int = 10  # stride < patch size: patches overlap by 6 bins ...
    time_stride: int = 10  # ... and by 6 frames
    max_length: int = 1024  # T: frames per clip, 10.24 s at a 10 ms shift
    num_mel_bins: int = 128  # F
    id2label: dict | None = None
    problem_type: str | None = None  # "regression" | "single_label_classification" | "multi_label_classification"

    # transformers' general settings that change what a forward pass returns (see OUTPUT_SETTINGS)
    output_hidden_states = False
    output_attentions = False
    return_dict = True

    def __init__(self, *, num_labels: int | None = None, label2id: dict | None = None, **kwargs):
        names = {f.name for f in dataclasses.fields(self)}
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in names}
        for f in dataclasses.fields(self):
            setattr(self, f.name, kwargs.get(f.name, f.default))
        self.id2label = _labels(num_labels, self.id2label, label2id)
        derived = {name for name, v in vars(ASTConfig).items() if isinstance(v, property) and v.fset is None}
        extra = {name: value for name, value in extra.items() if name not in derived}  # recomputed, not stored
        for name, value in extra.items():
            setattr(self, name, value)
        self._extra = sorted(extra)
        _validate(self)

    # ---- labels, settable as in transformers --------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != self.num_labels:  # transformers keeps the names when the count is unchanged
            self.id2label = _labels(value, None, None)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    @label2id.setter
    def label2id(self, value: dict) -> None:
        self.id2label = _labels(None, None, value)

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def frequency_out_dimension(self) -> int:
        """Patches along frequency: (F - patch) // stride + 1."""
        return (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1

    @property
    def time_out_dimension(self) -> int:
        """Patches along time: (T - patch) // stride + 1."""
        return (self.max_length - self.patch_size) // self.time_stride + 1

    @property
    def num_patches(self) -> int:
        return self.frequency_out_dimension * self.time_out_dimension

    @property
    def sequence_length(self) -> int:
        """L: the patches plus the [CLS] and distillation tokens."""
        return self.num_patches + 2

    # ---- config.json -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields as transformers writes them in config.json (label keys as strings)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update({name: getattr(self, name) for name in self._extra})
        # set on this config, by the constructor or afterwards (`config.output_hidden_states = True`)
        d.update({name: getattr(self, name) for name in OUTPUT_SETTINGS if name in vars(self)})
        d["id2label"] = {str(i): label for i, label in self.id2label.items()}
        d["label2id"] = self.label2id
        d["model_type"] = MODEL_TYPE
        return d

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "ASTConfig":
        """Build from a config.json dict (overrides win); bookkeeping keys (architectures, dtype, ...) are dropped."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a dict of settings, got a {type(d).__name__}")
        model_type = d.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(
                f"config.json has model_type {model_type!r}, not {MODEL_TYPE!r}: "
                "this is not an Audio Spectrogram Transformer checkpoint."
            )
        settings = {k: v for k, v in {**d, **overrides}.items() if k not in BOOKKEEPING_KEYS}
        if "id2label" in overrides or "num_labels" in overrides:
            settings.pop("label2id", None)
        if ("label2id" in overrides or "num_labels" in overrides) and "id2label" not in overrides:
            settings.pop("id2label", None)
        if "num_labels" in settings and "id2label" in settings and len(settings["id2label"]) != settings["num_labels"]:
            settings.pop("id2label")  # transformers: a new count replaces the stored names
            settings.pop("label2id", None)
        return cls(**settings)

    def save_pretrained(self, directory: str | os.PathLike) -> list[str]:
        """Write `directory/config.json`, readable by `transformers.ASTConfig.from_pretrained`; returns [its path]."""
        return [files.write_json(os.path.join(os.fspath(directory), CONFIG_FILE), self.to_dict())]

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, **kwargs) -> "ASTConfig":
        """Read `config.json` from a directory, the file itself, or a hub id (`subfolder=`, `revision=`, ...).

        Other keyword arguments override the stored settings (e.g. `num_labels=5`).
        """
        hub, overrides = compat.split_hub_options(kwargs)
        file = compat.settings_file(path_or_hub_id, CONFIG_FILE, hub)
        settings = files.read_json_object(file, "config")
        try:
            return cls.from_dict(settings, **overrides)
        except ValueError as e:
            raise type(e)(f"{os.fspath(file)!r}: {e}") from None

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> "ASTConfig":
        """The config itself: AST has one modality, and transformers' configs answer so for such models."""
        return self

    def replace(self, **changes) -> "ASTConfig":
        """A copy with some fields changed (e.g. `max_length=512`)."""
        return ASTConfig.from_dict(self.to_dict(), **changes)

    def __eq__(self, other) -> bool:
        return isinstance(other, ASTConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        shown = [f.name for f in dataclasses.fields(self) if f.name != "id2label"] + self._extra
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"ASTConfig({inner}, num_labels={self.num_labels})"


# ---- validation ---------------------------------------------------------------------------------
POSITIVE_INTS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
                 "frequency_stride", "time_stride", "max_length", "num_mel_bins")  # fmt: skip
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# A label count given without names gets one generated name each, before any weight is seen: a
# count from a damaged or crafted config.json must not decide how much memory that takes. 2^20 is
# far above any audio label set (AudioSet's ontology has 632 classes).
MAX_LABELS = 2**20


def _validate(c: ASTConfig) -> None:
    """Refuse settings the model cannot be built from, naming the field."""
    for name in POSITIVE_INTS:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config field {name!r} must be an integer, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"config field {name!r} must be at least 1, got {value}")
    for name in (*PROBABILITIES, "initializer_range", "layer_norm_eps"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config field {name!r} must be a number, got {type(value).__name__} {value!r}")
        if name in PROBABILITIES and not 0 <= value < 1:
            raise ValueError(f"config field {name!r} is a probability in [0, 1), got {value}")
        if name == "layer_norm_eps" and not value > 0:
            raise ValueError(f"config field 'layer_norm_eps' must be positive, got {value}")
        if name == "initializer_range" and not value >= 0:
            raise ValueError(f"config field 'initializer_range' must be non-negative, got {value}")
    if not isinstance(c.qkv_bias, bool):
        raise ValueError(f"config field 'qkv_bias' must be true or false, got {c.qkv_bias!r}")
    if not isinstance(c.hidden_act, str):
        raise ValueError(f"config field 'hidden_act' must be a string, got {c.hidden_act!r}")
    if c.num_mel_bins < c.patch_size or c.max_length < c.patch_size:
        raise ValueError(
            f"a {c.num_mel_bins} x {c.max_length} spectrogram is smaller than one "
            f"{c.patch_size} x {c.patch_size} patch: raise num_mel_bins/max_length or lower patch_size"
        )
    if c.problem_type not in (None, *compat.PROBLEM_TYPES):
        raise ValueError(f"unknown problem_type {c.problem_type!r}; use one of {compat.PROBLEM_TYPES}")


def _labels(num_labels, id2label, label2id) -> dict[int, str]:
    """Resolve the label set the way transformers does: id2label wins, then label2id, then num_labels."""
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"config field 'num_labels' must be a positive integer, got {num_labels!r}")
    if num_labels is not None and num_labels > MAX_LABELS:
        raise ValueError(f"config field 'num_labels' is {num_labels}, more than the {MAX_LABELS} labels ast-min accepts: "
                         "the config is damaged, or give the label names as id2label")
    for name, mapping in (("id2label", id2label), ("label2id", label2id)):
        if mapping is not None and not isinstance(mapping, dict):
            raise ValueError(f"config field {name!r} must be a mapping, got {type(mapping).__name__}")
    try:
        if id2label is not None:
            labels = {int(i): str(label) for i, label in id2label.items()}
        elif label2id is not None:
            labels = {int(i): str(label) for label, i in label2id.items()}
        else:
            labels = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
    except (TypeError, ValueError):
        raise ValueError("config field 'id2label' must map integer ids to names") from None
    if num_labels is not None and num_labels != len(labels):
        raise ValueError(f"num_labels={num_labels} disagrees with the {len(labels)} labels given")
    if sorted(labels) != list(range(len(labels))):
        raise ValueError("id2label must map ids 0..num_labels-1, each once")
    return labels


__all__ = ["ASTConfig", "MODEL_TYPE"]
