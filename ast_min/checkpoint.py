"""Checkpoints: Hugging Face and original-repository weights <-> ast-min parameter names.

Two formats, one visible name table each (checkpoint name -> ast-min name, `{i}` a layer index,
`{w}` weight or bias):

- Hugging Face (`config.json` + `model.safetensors` or `pytorch_model.bin`), the names every
  transformers version writes on disk (5.x renames them in memory only). Loaded from a local
  directory or, online, by hub id; saved back in the same format so transformers loads it.
- The original repository YuanGongND/ast (`audioset_10_10_0.4593.pth` and the ESC-50 / Speech
  Commands models): timm's ViT names under `module.` (the file is a DataParallel state dict), with
  q, k and v fused into one `attn.qkv` matrix (rows q, then k, then v). The file stores no
  architecture: it comes from a `config` argument, by default AST-Base with the patch grid read
  off the position embeddings.

Pickled files are opened only with `torch.load(weights_only=True)`, which refuses arbitrary code.
Before any model is built, the config is compared with the weights' names and shapes (for
safetensors, read from the file's header without loading it): a config that does not describe
them (another depth, width, patch grid or label count, or more parameters than the file holds) is
refused naming the config and the field, so that a damaged or crafted config.json cannot make the
loader allocate a model of any size. A checkpoint whose tensors do not match the model fails with a ValueError listing the missing,
unexpected and wrongly shaped ones, and so do tensors that are not floating point or hold NaN/Inf
(they would give confident nonsense or `nan` scores). Saving replaces the directory all-or-nothing
(`files.replace_directory`).

This module builds models but does not import them: `pretrained.py` calls it with the class to build.

Shape legend: D hidden size, C labels, f x t patch grid.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ast_min import compat, files
from ast_min.config import CONFIG_FILE, ASTConfig
from ast_min.files import HOW_TO_GET_ONE

# ---- the name tables ----------------------------------------------------------------------------

# Hugging Face, encoder (under `audio_spectrogram_transformer.` in a classification checkpoint).
HF_ENCODER_NAMES = {
    "embeddings.cls_token": "embeddings.cls_token",
    "embeddings.distillation_token": "embeddings.distillation_token",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.patch_embeddings.projection.{w}": "embeddings.patch_embeddings.projection.{w}",
    "encoder.layer.{i}.layernorm_before.{w}": "layers.{i}.layernorm_before.{w}",
    "encoder.layer.{i}.attention.attention.query.{w}": "layers.{i}.attention.query.{w}",
    "encoder.layer.{i}.attention.attention.key.{w}": "layers.{i}.attention.key.{w}",
    "encoder.layer.{i}.attention.attention.value.{w}": "layers.{i}.attention.value.{w}",
    "encoder.layer.{i}.attention.output.dense.{w}": "layers.{i}.attention.output.{w}",
    "encoder.layer.{i}.layernorm_after.{w}": "layers.{i}.layernorm_after.{w}",
    "encoder.layer.{i}.intermediate.dense.{w}": "layers.{i}.mlp.fc1.{w}",
    "encoder.layer.{i}.output.dense.{w}": "layers.{i}.mlp.fc2.{w}",
    "layernorm.{w}": "layernorm.{w}",
}
HF_HEAD_NAMES = {
    "classifier.layernorm.{w}": "classifier.layernorm.{w}",
    "classifier.dense.{w}": "classifier.dense.{w}",
}
HF_ENCODER_PREFIX = "audio_spectrogram_transformer."

# Original repository (timm DeiT names, `module.` stripped). A tuple target is a fused tensor
# split along dim 0 into equal parts.
ORIGINAL_ENCODER_NAMES = {
    "v.cls_token": "embeddings.cls_token",
    "v.dist_token": "embeddings.distillation_token",
    "v.pos_embed": "embeddings.position_embeddings",
    "v.patch_embed.proj.{w}": "embeddings.patch_embeddings.projection.{w}",
    "v.blocks.{i}.norm1.{w}": "layers.{i}.layernorm_before.{w}",
    "v.blocks.{i}.attn.qkv.{w}": (
        "layers.{i}.attention.query.{w}",
        "layers.{i}.attention.key.{w}",
        "layers.{i}.attention.value.{w}",
    ),
    "v.blocks.{i}.attn.proj.{w}": "layers.{i}.attention.output.{w}",
    "v.blocks.{i}.norm2.{w}": "layers.{i}.layernorm_after.{w}",
    "v.blocks.{i}.mlp.fc1.{w}": "layers.{i}.mlp.fc1.{w}",
    "v.blocks.{i}.mlp.fc2.{w}": "layers.{i}.mlp.fc2.{w}",
    "v.norm.{w}": "layernorm.{w}",
}
ORIGINAL_HEAD_NAMES = {
    "mlp_head.0.{w}": "classifier.layernorm.{w}",
    "mlp_head.1.{w}": "classifier.dense.{w}",
}
# DeiT's ImageNet heads ride along in the original files but AST never uses them.
ORIGINAL_UNUSED = re.compile(r"^v\.(head|head_dist)\.(weight|bias)$")

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"


def spell_out_names(table: dict, num_layers: int) -> dict:
    """Spell a name table out for `num_layers` layers: {checkpoint name: ast-min name or tuple of names}."""
    out = {}
    for src, dst in table.items():
        layers = range(num_layers) if "{i}" in src else [None]
        parts = ("weight", "bias") if "{w}" in src else [None]
        for i in layers:
            for w in parts:
                fill = lambda s: s.replace("{i}", str(i)).replace("{w}", str(w))  # noqa: E731
                out[fill(src)] = tuple(fill(d) for d in dst) if isinstance(dst, tuple) else fill(dst)
    return out



# ---- finding and reading files ------------------------------------------------------------------


def read_hf_directory(directory: Path, config: ASTConfig | None = None) -> tuple[ASTConfig, dict[str, torch.Tensor]]:
    """config.json and the weights (safetensors preferred) of a Hugging Face checkpoint directory.

    A directory without config.json (transformers' Trainer saves only the weights of a model that
    is not a transformers class) is read when `config` describes it. The config is checked against
    the weights' names and shapes (`check_config_fits_weights`) before they are loaded.
    """
    config, weights, config_source = _hf_config_and_weights(directory, config)
    return config, _read_checked(weights, config, config_source)


def _hf_config_and_weights(directory: Path, config: ASTConfig | None) -> tuple[ASTConfig, Path, str]:
    """The config of a Hugging Face directory (`config` when given), its weights file, and what to call the config."""
    weights = [directory / name for name in HF_WEIGHT_FILES if (directory / name).is_file()]
    if config is None and weights and not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{str(directory)!r} holds weights but no {CONFIG_FILE} (transformers' Trainer saves only the "
            "weights of an ast-min model): pass config=..., or train with "
            "callbacks=[ast_min.SaveConfigCallback()] so that its checkpoints carry the config")
    source = "the config passed to from_pretrained"
    if config is None or (directory / CONFIG_FILE).is_file():
        config = ASTConfig.from_pretrained(directory)
        source = repr(str(directory / CONFIG_FILE))
    if not weights:
        raise FileNotFoundError(
            f"{str(directory)!r} holds no weights ({' or '.join(HF_WEIGHT_FILES)}); "
            "sharded checkpoints are not supported: re-save it with save_pretrained"
        )
    return config, weights[0], source


def _read_checked(file: Path, config: ASTConfig, config_source: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, once `config` is known to describe them (safetensors: checked on the header)."""
    if file.name.endswith(".safetensors"):
        check_config_fits_weights(config, _safetensors_shapes(file), config_source, str(file))
        return _read_safetensors(file)
    tensors = _read_pickle(file)  # a pickle has no header: its shapes are known once it is read
    check_config_fits_weights(config, {k: tuple(v.shape) for k, v in tensors.items()}, config_source, str(file))
    return tensors


def _safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header, without reading the tensors."""
    try:
        with safe_open(file, framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:
        raise ValueError(
            f"{str(file)!r} is not a readable safetensors file ({e}); it may be truncated: download or save it again"
        ) from None


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(file)
    except Exception as e:
        raise ValueError(
            f"{str(file)!r} is not a readable safetensors file ({e}); it may be truncated: download or save it again"
        ) from None


def _read_pickle(file: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{str(file)!r} is not a readable PyTorch state dict ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "it may be truncated or not a checkpoint. Only plain tensors are loaded (weights_only=True)"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # training scripts often wrap the weights
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{str(file)!r} does not hold a state dict (a dict of tensors)")
    return obj


def original_default_config(tensors: dict[str, torch.Tensor]) -> ASTConfig:
    """AST-Base as the released .pth files were trained (128 mel bins, 16 x 16 patches, strides 10,
    12 heads), with what the tensors do tell: hidden size, MLP width, depth, label count, and the
    number of frames from the position-embedding grid."""
    base = ASTConfig()
    if "v.pos_embed" not in tensors or "mlp_head.1.weight" not in tensors:
        raise ValueError(
            "this .pth file has no v.pos_embed / mlp_head.1.weight: it is not an original-repository AST checkpoint"
        )
    num_patches = tensors["v.pos_embed"].shape[1] - 2
    f = base.frequency_out_dimension
    if num_patches % f:
        raise ValueError(
            f"the .pth position embeddings hold {num_patches} patches, not a multiple of {f} frequency rows: "
            "pass config=ASTConfig(...) with this model's num_mel_bins, strides and max_length"
        )
    t = num_patches // f
    # Every T in [shortest, shortest + stride) gives t time patches; the released models use powers
    # of two (1024 AudioSet, 512 ESC-50, 128 Speech Commands), so prefer one of those.
    shortest = (t - 1) * base.time_stride + base.patch_size
    candidates = range(shortest, shortest + base.time_stride)
    max_length = next((T for T in candidates if T & (T - 1) == 0), shortest)
    depth = len({k.split(".")[2] for k in tensors if k.startswith("v.blocks.")})
    fc1 = tensors.get("v.blocks.0.mlp.fc1.weight")
    return ASTConfig(
        hidden_size=tensors["v.pos_embed"].shape[2],
        intermediate_size=fc1.shape[0] if fc1 is not None else base.intermediate_size,
        num_hidden_layers=depth,
        max_length=max_length,
        num_labels=tensors["mlp_head.1.weight"].shape[0],
    )


# ---- does the config describe the weights? -------------------------------------------------------

# Names that carry a size, in all three naming schemes (Hugging Face on disk, ast-min, original).
_LAYER_NAME = re.compile(r"(?:^|\.)(?:encoder\.layer|layers|blocks)\.(\d+)\.")
_SIZE_OF = {  # config field -> (pattern of the tensor's name, the shape's axis that holds it)
    "hidden_size": (re.compile(r"(?:^|\.)cls_token$"), -1),
    "intermediate_size": (re.compile(r"\.(?:intermediate\.dense|mlp\.fc1)\.weight$"), 0),
    "patch_size": (re.compile(r"(?:patch_embeddings\.projection|patch_embed\.proj)\.weight$"), -1),
    "sequence_length": (re.compile(r"(?:^|\.)(?:position_embeddings|pos_embed)$"), 1),
    "num_labels": (re.compile(r"^(?:classifier\.dense|mlp_head\.1)\.weight$"), 0),
}
_SEQUENCE_FIELDS = "num_mel_bins, max_length, patch_size and the strides"


def parameter_count(config: ASTConfig, with_head: bool = True) -> int:
    """The number of weights of the model `config` describes, by arithmetic (nothing is built).

    Embeddings: [CLS], [DIST] (D each), positions (L D), the patch projection (D p^2 + D); each of
    the N blocks: two LayerNorms (4 D), q, k, v (3 D^2, + 3 D with qkv_bias), the output projection
    (D^2 + D) and the MLP (2 D I + I + D); the final LayerNorm (2 D); the head: LayerNorm (2 D) and
    dense (D C + C). Python integers: no overflow, whatever a config.json claims.
    """
    D, I, p, N, C = config.hidden_size, config.intermediate_size, config.patch_size, config.num_hidden_layers, config.num_labels
    embeddings = 2 * D + config.sequence_length * D + D * p * p + D
    block = 4 * D + 3 * D * D + (3 * D if config.qkv_bias else 0) + D * D + D + 2 * D * I + I + D
    head = 2 * D + D * C + C
    return embeddings + N * block + 2 * D + (head if with_head else 0)


def check_config_fits_weights(config: ASTConfig, shapes: dict[str, tuple[int, ...]], config_source: str,
                              weights_source: str) -> None:
    """Refuse a config that does not describe weights of these names and shapes, before any model is built.

    Compared: the layers the weights hold with num_hidden_layers, then each size a tensor carries
    (hidden size from [CLS], MLP width, patch size, position count, label count when there is a
    head); and, for names of any other kind, the parameter count: a config whose encoder alone
    needs more weights than the file holds cannot be its config. A config.json claiming a million
    layers or a hidden size of 4096 beside a small model is refused here, in one line, instead of
    allocating that model first.
    """
    problems = []
    held = sorted({int(m.group(1)) for name in shapes if (m := _LAYER_NAME.search(name))})
    if held != list(range(config.num_hidden_layers)):
        holds = "no transformer layers" if not held else (
            f"{len(held)} layers" if held == list(range(len(held))) else f"layers {', '.join(map(str, held[:8]))}"
            + (" ..." if len(held) > 8 else ""))
        problems.append(f"num_hidden_layers is {config.num_hidden_layers}, but the weights hold {holds}")
    for field, (pattern, axis) in _SIZE_OF.items():
        name = next((n for n in shapes if pattern.search(n) and len(shapes[n]) >= 2), None)
        if name is None:
            continue
        value = shapes[name][axis]
        if getattr(config, field) != value:
            what = f"{field} is {getattr(config, field)}" if field != "sequence_length" else (
                f"{_SEQUENCE_FIELDS} give {config.sequence_length} positions")
            problems.append(f"{what}, but {name} {tuple(shapes[name])} holds {value}")
    if not problems:
        needed, numbers = parameter_count(config, with_head=False), sum(math.prod(s) for s in shapes.values())
        if needed > numbers:
            problems.append(f"its encoder has {needed:,} weights, but the file holds {numbers:,} numbers")
    if problems:
        raise ValueError(
            f"{config_source} does not describe the weights in {weights_source!r}: {'; '.join(problems)}. "
            "The config was changed or belongs to another model: restore the checkpoint's own config.json "
            "(or, for a .pth file, pass config=ASTConfig(...) with its architecture)"
        )


# ---- converting names ---------------------------------------------------------------------------


def hf_to_ast_min(tensors: dict[str, torch.Tensor], num_layers: int, with_head: bool) -> tuple[dict, list[str]]:
    """Rename Hugging Face tensors to ast-min's names.

    Returns ({ast-min name: tensor}, unexpected checkpoint names). Keys are those of
    `ASTForAudioClassification` when `with_head`, else those of `ASTModel`; a checkpoint saved from
    either class can feed either one (an ASTModel ignores a classifier). A file holding ast-min's
    own names (a `model.state_dict()` saved as is, as transformers' Trainer does) is read too.
    """
    inverse = _hf_names_of_ast_min_names(num_layers)
    if tensors and all(name in inverse for name in tensors):
        tensors = {inverse[name]: tensor for name, tensor in tensors.items()}
    return _rename(tensors, HF_ENCODER_NAMES, HF_HEAD_NAMES, num_layers, with_head, encoder_prefix=HF_ENCODER_PREFIX)


def original_to_ast_min(tensors: dict[str, torch.Tensor], num_layers: int, with_head: bool) -> tuple[dict, list[str]]:
    """Rename original-repository (timm) tensors to ast-min's names, splitting the fused qkv."""
    return _rename(tensors, ORIGINAL_ENCODER_NAMES, ORIGINAL_HEAD_NAMES, num_layers, with_head, ignored=ORIGINAL_UNUSED)


def _rename(
    tensors: dict, encoder_table: dict, head_table: dict, num_layers: int, with_head: bool,
    encoder_prefix: str = "", ignored: re.Pattern | None = None,
) -> tuple[dict, list[str]]:  # fmt: skip
    # encoder names are looked up without the checkpoint's encoder_prefix (absent when it was saved
    # from an encoder alone) and given ast-min's when the target model has a head
    encoder, head = spell_out_names(encoder_table, num_layers), spell_out_names(head_table, num_layers)
    prefix = HF_ENCODER_PREFIX if with_head else ""
    out, unexpected = {}, []
    for name, tensor in tensors.items():
        bare = name.removeprefix(encoder_prefix)
        if bare in encoder:
            targets = encoder[bare]
            if isinstance(targets, tuple):  # (3D, D) or (3D,) -> three (D, D) or (D,): rows q, k, v
                if tensor.shape[0] % len(targets):
                    unexpected.append(f"{name} {tuple(tensor.shape)} (cannot split in {len(targets)})")
                    continue
                for target, part in zip(targets, tensor.chunk(len(targets), dim=0)):
                    out[prefix + target] = part
            else:
                out[prefix + targets] = tensor
        elif name in head:
            if with_head:
                out[head[name]] = tensor
        elif not (ignored and ignored.match(name)):
            unexpected.append(name)
    return out, unexpected


def strip_module_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`module.v.cls_token` -> `v.cls_token`: the original files are torch.nn.DataParallel state dicts."""
    return {k.removeprefix("module."): v for k, v in tensors.items()}


# ---- fitting the position embeddings to another patch grid ----------------------------------------


def adapt_position_embeddings(
    position_embeddings: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Fit learned position embeddings to another patch grid, by the original repository's rule.

    position_embeddings: (1, 2 + f*t, D) for the grid old_grid = (f, t); returns
    (1, 2 + f'*t', D) for new_grid = (f', t'). The two token rows are kept. Along time, then along
    frequency (the order of YuanGongND/ast `src/models/ast_models.py`): a shorter axis is cut from
    the middle (start = old // 2 - new // 2), a longer one is bilinearly interpolated
    (`align_corners=False`). The author found cutting better than interpolating for short inputs
    (ESC-50's 512 frames give t' = 50, Speech Commands' 128 give t' = 12). Same grid: identity.
    """
    (f, t), (new_f, new_t) = old_grid, new_grid
    if position_embeddings.shape[1] != 2 + f * t:
        raise ValueError(
            f"position embeddings have {position_embeddings.shape[1]} rows, but a {f} x {t} grid needs "
            f"{2 + f * t}: the config's num_mel_bins/max_length/strides do not match these weights"
        )
    if (f, t) == (new_f, new_t):
        return position_embeddings
    D = position_embeddings.shape[2]
    tokens, grid = position_embeddings[:, :2], position_embeddings[:, 2:]  # (1, 2, D), (1, P, D)
    grid = grid.transpose(1, 2).reshape(1, D, f, t)  # (1, D, f, t): rows are frequency
    if new_t < t:
        start = t // 2 - new_t // 2
        grid = grid[:, :, :, start : start + new_t]  # (1, D, f, t')
    elif new_t > t:
        grid = F.interpolate(grid, size=(f, new_t), mode="bilinear", align_corners=False)
    if new_f < f:
        start = f // 2 - new_f // 2
        grid = grid[:, :, start : start + new_f, :]  # (1, D, f', t')
    elif new_f > f:
        grid = F.interpolate(grid, size=(new_f, new_t), mode="bilinear", align_corners=False)
    grid = grid.reshape(1, D, new_f * new_t).transpose(1, 2)  # (1, P', D), frequency-major
    return torch.cat([tokens, grid], dim=1)


# ---- loading ------------------------------------------------------------------------------------


def load_pretrained(
    cls,
    path_or_hub_id: str | os.PathLike,
    *,
    attn_implementation: str = "auto",
    config: ASTConfig | None = None,
    max_length: int | None = None,
    id2label: dict | None = None,
    num_labels: int | None = None,
    label2id: dict | None = None,
    ignore_mismatched_sizes: bool = False,
    dtype: torch.dtype | str | None = None,
    **kwargs,
):
    """Build `cls` (ASTModel or ASTForAudioClassification) from a checkpoint; see `PreTrainedAST.from_pretrained`."""
    hub_options, config_overrides = compat.split_hub_options(kwargs)
    with_head = getattr(cls, "has_classifier", False)
    path = files.resolve(path_or_hub_id, **hub_options)
    if path.is_dir():
        file_config, weights, config_source = _hf_config_and_weights(path, config)
        checkpoint_config = config or file_config
        if config is not None:
            config_source = "the config passed to from_pretrained"
        tensors = _read_checked(weights, checkpoint_config, config_source)
        convert, labels_stored = hf_to_ast_min, True
    elif path.suffix in files.PICKLE_SUFFIXES:
        tensors = strip_module_prefix(_read_pickle(path))
        checkpoint_config = config or original_default_config(tensors)
        check_config_fits_weights(checkpoint_config, {k: tuple(v.shape) for k, v in tensors.items()},
                                  "the config passed to from_pretrained" if config is not None else
                                  "the architecture read off the .pth file", str(path))
        convert, labels_stored = original_to_ast_min, False
    else:
        raise ValueError(f"{str(path)!r} is not a checkpoint: {HOW_TO_GET_ONE}")
    check_weights(tensors, str(path))

    target = checkpoint_config
    if max_length is not None and max_length != target.max_length:
        config_overrides["max_length"] = max_length
    if config_overrides:
        target = target.replace(**config_overrides)
    fresh_head = False
    labels = _requested_labels(id2label, label2id, num_labels, target)
    if labels is not None:
        wanted = target.replace(id2label=labels)
        # Same labels keep the trained head. A .pth stores no label names, so there the count decides.
        # (a count alone asks for the stored labels when it fits: _requested_labels)
        same = wanted.id2label == target.id2label if labels_stored else wanted.num_labels == target.num_labels
        if with_head and not same and id2label is None and label2id is None and not ignore_mismatched_sizes:
            raise ValueError(
                f"the checkpoint's head has {target.num_labels} labels, not num_labels={num_labels}: "
                "pass ignore_mismatched_sizes=True to start a fresh head (or id2label={0: 'name', ...})"
            )
        fresh_head = with_head and not same
        target = wanted

    state, unexpected = convert(tensors, checkpoint_config.num_hidden_layers, with_head)
    _adapt_grid(state, checkpoint_config, target)
    if fresh_head:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if with_head and not fresh_head and not any(k.startswith("classifier.") for k in state):
        raise ValueError(
            f"{str(path)!r} has no classification head (it was saved from an ASTModel): "
            "pass id2label={0: 'label', ...} to start a fresh head, or load it with ASTModel"
        )
    model = cls(target)  # only now: everything that can be refused without it was (a head of the config's size too)
    _load_checked(model, state, unexpected, skip_prefix="classifier." if fresh_head else None, source=str(path))
    model.set_attn_implementation(attn_implementation)
    if dtype is not None and dtype != "auto":
        model.to(_torch_dtype(dtype))
    return model.eval()


def _requested_labels(id2label, label2id, num_labels, config: ASTConfig) -> dict | None:
    """The label set asked for by any of transformers' three routes, or None to keep the checkpoint's."""
    if id2label is not None or label2id is not None:
        return ASTConfig(id2label=id2label, label2id=label2id, num_labels=num_labels).id2label
    if num_labels is not None:  # transformers keeps the names when the count is unchanged
        return dict(config.id2label) if num_labels == config.num_labels else ASTConfig(num_labels=num_labels).id2label
    return None


def _torch_dtype(dtype: torch.dtype | str) -> torch.dtype:
    value = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype such as torch.float16 or 'bfloat16', got {dtype!r}")
    return value


def check_weights(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuse tensors that are not floating point or hold NaN/Inf, naming them: either gives confident nonsense."""
    problems = []
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            problems.append(f"{name} ({tensor.dtype})")
        elif not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            problems.append(f"{name} ({bad} NaN/Inf values)")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems) - 8} more)" if len(problems) > 8 else "")
        raise ValueError(
            f"the checkpoint {source!r} has {len(problems)} unusable tensors: {shown}. "
            "Weights must be finite floating-point numbers: the file is damaged or not an AST checkpoint; "
            "download or save it again"
        )


def _adapt_grid(state: dict, old: ASTConfig, new: ASTConfig) -> None:
    """Cut or interpolate the position embeddings in `state` when the patch grid changes."""
    key = next((k for k in state if k.endswith("embeddings.position_embeddings")), None)
    old_grid = (old.frequency_out_dimension, old.time_out_dimension)
    new_grid = (new.frequency_out_dimension, new.time_out_dimension)
    if key is None or old_grid == new_grid or state[key].shape[1] != old.sequence_length:
        return  # a wrong shape is reported by _load_checked with the others
    state[key] = adapt_position_embeddings(state[key], old_grid, new_grid)


def _load_checked(model, state: dict, unexpected: list[str], skip_prefix: str | None, source: str) -> None:
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if skip_prefix:
        expected = {k: s for k, s in expected.items() if not k.startswith(skip_prefix)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(unexpected) + sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k])}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k]
    ]
    if missing or unexpected or wrong:
        problems = []
        for title, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if names:
                shown = "; ".join(names[:8]) + (f"; ... ({len(names) - 8} more)" if len(names) > 8 else "")
                problems.append(f"{len(names)} {title}: {shown}")
        raise ValueError(
            f"the checkpoint {source!r} does not fit this model ({' | '.join(problems)}). "
            "Check that the config (layers, hidden size, patch grid, labels) is the checkpoint's; "
            "for a .pth file pass config=ASTConfig(...) with its architecture"
        )
    model.load_state_dict(state, strict=skip_prefix is None)


# ---- saving -------------------------------------------------------------------------------------


def ast_min_to_hf(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """ast-min names -> Hugging Face on-disk names (the inverse of `hf_to_ast_min`)."""
    inverse = _hf_names_of_ast_min_names(num_layers)
    return {inverse[k]: v for k, v in state.items()}


def _hf_names_of_ast_min_names(num_layers: int) -> dict[str, str]:
    inverse = {}
    for table, prefixes in ((HF_ENCODER_NAMES, ("", HF_ENCODER_PREFIX)), (HF_HEAD_NAMES, ("",))):
        for src, dst in spell_out_names(table, num_layers).items():
            for p in prefixes:
                inverse[p + dst] = p + src
    return inverse


def save_pretrained(model, directory: str | os.PathLike, state_dict: dict | None = None) -> list[str]:
    """Write `config.json` and `model.safetensors` that `transformers.AST*.from_pretrained` loads; returns their paths.

    The directory is replaced all-or-nothing (`files.replace_directory`). Saving over another
    checkpoint replaces it whole: its weights in any format and its preprocessor_config.json
    (which describes the old model's input) go; other files stay. A preprocessor_config.json in a
    directory with no model yet was saved for this one and stays.
    """
    directory = Path(directory)
    owned = {CONFIG_FILE, *HF_WEIGHT_FILES}
    if (directory / CONFIG_FILE).exists():
        owned.add(PREPROCESSOR_FILE)
    return files.replace_directory(directory, lambda tmp: write_pretrained(model, tmp, state_dict), owned)


def write_pretrained(model, directory: str | os.PathLike, state_dict: dict | None = None) -> list[str]:
    """Write `config.json` and `model.safetensors` into the existing `directory`, as they are; returns their paths.

    The files of one checkpoint, for a writer that makes the directory all-or-nothing itself
    (`save_pretrained` above, the trainer's checkpoints).
    """
    state = model.state_dict() if state_dict is None else state_dict
    tensors = ast_min_to_hf(state, model.config.num_hidden_layers)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    config = {**model.config.to_dict(), "architectures": [type(model).__name__]}
    weights = os.path.join(os.fspath(directory), "model.safetensors")
    save_file(tensors, weights, metadata={"format": "pt"})
    return [files.write_json(os.path.join(os.fspath(directory), CONFIG_FILE), config), weights]
