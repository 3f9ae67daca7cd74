"""The AST configuration: every field and default of `transformers.ASTConfig`.

`config.json` is read and written in the same format as transformers, so a checkpoint directory is
interchangeable between the two libraries. Sizes the model needs (the patch grid, the sequence
length) are derived here by arithmetic, never by running a dummy forward pass.

Shape legend: F mel bins (`num_mel_bins`), T frames (`max_length`), L tokens, D hidden size.
"""

from __future__ import annotations

import json
import os

MODEL_TYPE = "audio-spectrogram-transformer"


class ASTConfig:
    """Hyper-parameters of an Audio Spectrogram Transformer; defaults are AST-Base (the paper's).

    The defaults equal `transformers.ASTConfig()`: a ViT/DeiT-B encoder over 16 x 16 patches cut
    with stride 10 from a 1024-frame x 128-bin log-mel spectrogram. The label set is given as
    `id2label`, `label2id` or `num_labels`, as in transformers; `id2label` is what is stored.
    """

    # the fields written to config.json, in the order of __init__ (where their defaults live)
    FIELDS = (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
        "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins",
        "id2label", "problem_type",
    )  # fmt: skip

    def __init__(
        self,
        *,
        hidden_size: int = 768,  # D
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,  # H; head dim Dh = D / H
        intermediate_size: int = 3072,  # MLP width, 4 * D
        hidden_act: str = "gelu",  # the exact (erf) GELU, as in BERT/ViT
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,  # BERT's value, kept by the checkpoints
        patch_size: int = 16,
        qkv_bias: bool = True,
        frequency_stride: int = 10,  # stride < patch size: patches overlap by 6 bins ...
        time_stride: int = 10,  # ... and by 6 frames
        max_length: int = 1024,  # T: frames per clip, 10.24 s at a 10 ms shift
        num_mel_bins: int = 128,  # F
        num_labels: int | None = None,
        id2label: dict | None = None,
        label2id: dict | None = None,
        problem_type: str | None = None,  # "regression" | "single_label_classification" | "multi_label_classification"
    ):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.patch_size = patch_size
        self.qkv_bias = qkv_bias
        self.frequency_stride = frequency_stride
        self.time_stride = time_stride
        self.max_length = max_length
        self.num_mel_bins = num_mel_bins
        self.problem_type = problem_type
        self.id2label = _labels(num_labels, id2label, label2id)
        self._check()

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def frequency_out_dimension(self) -> int:
        """Patches along frequency: (F - patch) // stride + 1, 12 for AST-Base."""
        return (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1

    @property
    def time_out_dimension(self) -> int:
        """Patches along time: (T - patch) // stride + 1, 101 for AST-Base."""
        return (self.max_length - self.patch_size) // self.time_stride + 1

    @property
    def num_patches(self) -> int:
        return self.frequency_out_dimension * self.time_out_dimension

    @property
    def sequence_length(self) -> int:
        """L: the patches plus the [CLS] and distillation tokens, 1214 for AST-Base."""
        return self.num_patches + 2

    # ---- config.json -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields as transformers writes them in config.json (label keys as strings)."""
        d = {name: getattr(self, name) for name in self.FIELDS}
        d["id2label"] = {str(i): label for i, label in self.id2label.items()}
        d["label2id"] = self.label2id
        d["model_type"] = MODEL_TYPE
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ASTConfig":
        """Build from a config.json dict; keys ast-min does not model (architectures, dtype...) are ignored."""
        model_type = d.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(
                f"config.json has model_type {model_type!r}, not {MODEL_TYPE!r}: "
                "this is not an Audio Spectrogram Transformer checkpoint."
            )
        known = set(cls.FIELDS) | {"num_labels", "label2id"}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `directory/config.json`, readable by `transformers.ASTConfig.from_pretrained`."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "ASTConfig":
        """Read a directory's `config.json` (or the file itself)."""
        path = os.fspath(path)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(f"no config.json at {file!r}: expected a checkpoint directory")
        with open(file) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file!r} is not valid JSON ({e}); re-download or re-save the checkpoint") from None
        return cls.from_dict(d)

    def replace(self, **changes) -> "ASTConfig":
        """A copy with some fields changed (e.g. `max_length=512`)."""
        d = {name: getattr(self, name) for name in self.FIELDS}
        if "num_labels" in changes or "label2id" in changes:
            d.pop("id2label")
        d.update(changes)
        return ASTConfig(**d)

    def _check(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}: pick a head count that divides it"
            )
        if self.num_mel_bins < self.patch_size or self.max_length < self.patch_size:
            raise ValueError(
                f"a {self.num_mel_bins} x {self.max_length} spectrogram is smaller than one "
                f"{self.patch_size} x {self.patch_size} patch: raise num_mel_bins/max_length or lower patch_size"
            )
        if self.problem_type not in (None, "regression", "single_label_classification", "multi_label_classification"):
            raise ValueError(f"unknown problem_type {self.problem_type!r}")

    def __eq__(self, other) -> bool:
        return isinstance(other, ASTConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS if name != "id2label")
        return f"ASTConfig({inner}, num_labels={self.num_labels})"


def _labels(num_labels, id2label, label2id) -> dict[int, str]:
    """Resolve the label set the way transformers does: id2label wins, then label2id, then num_labels."""
    if id2label is not None:
        labels = {int(i): str(label) for i, label in id2label.items()}
    elif label2id is not None:
        labels = {int(i): str(label) for label, i in label2id.items()}
    else:
        labels = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
    if num_labels is not None and num_labels != len(labels):
        raise ValueError(f"num_labels={num_labels} disagrees with the {len(labels)} labels given")
    if sorted(labels) != list(range(len(labels))):
        raise ValueError("id2label must map ids 0..num_labels-1, each once")
    return labels
