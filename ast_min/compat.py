"""What ported transformers code touches around the numbers: outputs, settings files, arguments.

The paper-order code (`model.py`, `features.py`) stays free of this; the config, the feature
extractor and the models share it:

- `ModelOutput`: a forward pass's result that reads like transformers' ModelOutput: attributes
  (`out.logits`), keys (`out["logits"]`), positions (`out[0]`), `len`, `to_tuple()`; fields that
  are None are left out of the keys and the tuple, as transformers does.
- `classification_loss`: the loss transformers picks for a sequence classifier, `problem_type`
  inferred from the labels when not set.
- `JsonSettings`: `to_json_string`, `to_json_file`, `from_json_file` and hub-aware
  `settings_file` for classes that are a dict of settings (the config, the extractor).
- `split_hub_options`: the `from_pretrained` keyword arguments that say where to download from.

Shape legend: B batch, L tokens, D hidden size, H heads, C labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ast_min import files

# keyword arguments of transformers' from_pretrained that choose where files come from
HUB_OPTIONS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "proxies", "subfolder")


# ---- outputs ------------------------------------------------------------------------------------
class ModelOutput(dict):
    """Named outputs, readable as attributes, keys or positions, like transformers' ModelOutput.

    Subclasses list their fields in `KEYS`, in transformers' order. Every name in `FIELDS` is an
    attribute (None when not computed); only the `KEYS` that are not None are dict keys and
    tuple positions, so `out[0]` is the loss when labels were given and the logits otherwise.
    A key assigned by the caller (`out["extra"] = ...`) is kept after them, as transformers keeps it.
    Like transformers', an output is also built from another's items, `type(out)(dict(out))`: what
    accelerate's mixed precision and DataParallel's gather do to every forward pass's output.
    """

    FIELDS: tuple[str, ...] = ()
    KEYS: tuple[str, ...] = ()

    def __init__(self, items=(), /, **values):
        super().__init__()
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        items = dict(items)  # a mapping or (key, value) pairs
        for name in self.FIELDS:
            object.__setattr__(self, name, values.get(name, items.get(name)))
        self._rebuild()
        for key, value in items.items():
            if key not in self.KEYS:
                self[key] = value  # as if assigned: the caller's own keys stay keys

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name in self.KEYS:
            self._rebuild()

    def __setitem__(self, key, value):
        object.__setattr__(self, key, value)
        if key in self.KEYS:
            self._rebuild()
        else:  # a key of the caller's own: added after the fields, as transformers adds it
            super().__setitem__(key, value)

    def _rebuild(self) -> None:
        own = {key: value for key, value in self.items() if key not in self.KEYS}
        super().clear()
        for name in self.KEYS:  # unpickling sets the keys one by one before the attributes
            if getattr(self, name, None) is not None:
                super().__setitem__(name, getattr(self, name))
        for key, value in own.items():
            super().__setitem__(key, value)

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def to_tuple(self) -> tuple:
        """The values of the keys in order, the non-None fields then any of the caller's own:
        what `return_dict=False` returns."""
        return tuple(self.values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"


def _short(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"({len(value)} tensors)"
    return repr(value)


class ASTOutput(ModelOutput):
    """What a forward pass returns; the field names are transformers' so ported code keeps working.

    last_hidden_state: (B, L, D) after the final LayerNorm.
    pooler_output: (B, D), the mean of the [CLS] and distillation tokens.
    logits: (B, C), only from `ASTForAudioClassification`.
    loss: scalar, when `labels` were given.
    hidden_states: on request, num_hidden_layers + 1 tensors (B, L, D): the embeddings, then each
        block's output (the last one before the final LayerNorm, as in transformers).
    attentions: on request, num_hidden_layers tensors (B, H, L, L) of softmax probabilities.
    """

    FIELDS = ("last_hidden_state", "pooler_output", "logits", "loss", "hidden_states", "attentions")
    KEYS = ("last_hidden_state", "pooler_output", "hidden_states", "attentions")  # BaseModelOutputWithPooling's


class ASTClassificationOutput(ASTOutput):
    """`ASTForAudioClassification`'s output: keys and positions of transformers' SequenceClassifierOutput
    (loss, logits, hidden_states, attentions); the encoder's states stay readable as attributes."""

    KEYS = ("loss", "logits", "hidden_states", "attentions")


# ---- losses -------------------------------------------------------------------------------------
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None = None) -> torch.Tensor:
    """The loss transformers picks for a sequence classifier.

    problem_type None is inferred from the data: one label -> "regression" (MSE); integer labels
    -> "single_label_classification" (cross-entropy over C classes, ids of -100 ignored); float
    labels -> "multi_label_classification" (BCE with logits, AudioSet's loss: one sigmoid per class).
    logits: (B, C); labels: (B,) ids, (B, C) targets, or (B,) / (B, 1) regression values.
    """
    C = logits.shape[-1]
    if problem_type is None:
        if C == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if problem_type == "regression":
        if C == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        ids = labels.view(-1).long()
        bad = (ids != -100) & ((ids < 0) | (ids >= C))
        # torch's own error is an IndexError, or a device assert on CUDA. A compiled graph cannot branch
        # on tensor values (torch.compile(fullgraph=True) would refuse the model), so it skips the check.
        if not torch.compiler.is_compiling() and bool(bad.any()):
            raise ValueError(
                f"label id {int(ids[bad][0])} is outside the model's {C} labels (0..{C - 1}, or -100 to ignore): "
                "check the dataset's label ids, or load the model with id2label for its labels"
            )
        return F.cross_entropy(logits.view(-1, C), ids, ignore_index=-100)
    if problem_type == "multi_label_classification":
        if labels.shape != logits.shape:
            raise ValueError(
                f"multi-label targets must have the logits' shape {tuple(logits.shape)}, got {tuple(labels.shape)}; "
                "pass integer class ids (torch.long) for single-label classification"
            )
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {problem_type!r}")


# ---- settings files -----------------------------------------------------------------------------
def split_hub_options(kwargs: dict) -> tuple[dict, dict]:
    """(where-to-download options, everything else) out of from_pretrained's keyword arguments."""
    hub = {k: kwargs[k] for k in HUB_OPTIONS if k in kwargs}
    return hub, {k: v for k, v in kwargs.items() if k not in HUB_OPTIONS}


def settings_file(path_or_hub_id: str | os.PathLike, file_name: str, hub_options: dict) -> Path:
    """The settings file of a checkpoint: the path itself when it is a file, else `file_name` inside
    the directory or hub repository (and its `subfolder`)."""
    hub_options = dict(hub_options)
    subfolder = hub_options.pop("subfolder", "") or ""
    path = Path(os.fspath(path_or_hub_id)).expanduser()
    if path.is_file() and not subfolder:
        return path
    return files.resolve(path_or_hub_id, subfolder, **hub_options) / file_name


class JsonSettings:
    """JSON round trips for a class with `to_dict()` and `from_dict(dict)`, as transformers names them."""

    def to_json_string(self) -> str:
        return files.json_string(self.to_dict())

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        files.write_json(json_file_path, self.to_dict())

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike):
        return cls.from_dict(files.read_json_object(json_file, cls.__name__))
