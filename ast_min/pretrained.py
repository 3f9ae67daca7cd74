"""What both public models share besides the paper: loading, saving, initialisation and options.

`PreTrainedAST` is the base of `ASTModel` and `ASTForAudioClassification` (model.py). It gives
them transformers' surface around the numbers: `from_pretrained` / `save_pretrained` (through
`checkpoint.py`), the attention backend, ViT's weight initialisation, gradient checkpointing,
`device`, `dtype`, `num_parameters()`, and the `output_*` / `return_dict` options read from the
config when a call does not give them.

Shape legend: B batch, L tokens, D hidden size.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as recompute_in_backward

from ast_min import checkpoint
from ast_min.backends import check_attn_implementation
from ast_min.config import ASTConfig


class PreTrainedAST(nn.Module):
    """Loading, saving, backend selection and transformers-style options for the AST models."""

    config_class = ASTConfig
    main_input_name = "input_values"
    supports_gradient_checkpointing = True

    def __init__(self, config: ASTConfig):
        super().__init__()
        if not isinstance(config, ASTConfig):
            raise ValueError(f"config must be an ast_min.ASTConfig, got {type(config).__name__}")
        self.config = config
        self._attn_implementation = "auto"
        self.gradient_checkpointing = False

    # ---- checkpoints ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        *,
        attn_implementation: str = "auto",
        config: ASTConfig | None = None,
        max_length: int | None = None,
        id2label: dict[int, str] | None = None,
        num_labels: int | None = None,
        label2id: dict[str, int] | None = None,
        ignore_mismatched_sizes: bool = False,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        **kwargs,
    ):
        """Load a Hugging Face checkpoint (directory or hub id) or an original-repository `.pth` file.

        config: the architecture of a `.pth` file (which does not store one); default AST-Base with
            the patch grid read off the position embeddings.
        max_length: adapt the position embeddings to another number of frames
            (`adapt_position_embeddings`); default: the checkpoint's.
        id2label (or label2id): a label set different from the checkpoint's gets a freshly
            initialised head (to fine-tune on new classes); the same label set keeps the trained head.
        num_labels + ignore_mismatched_sizes=True: transformers' way to the same fresh head;
            without ignore_mismatched_sizes a different count is refused, as transformers does.
        dtype (or torch_dtype): cast the weights, e.g. torch.float16 or "bfloat16"; "auto" keeps them.
        Other keyword arguments: hub options (subfolder, revision, cache_dir, token,
        local_files_only, force_download) and config settings (e.g. output_hidden_states=True).
        """
        return checkpoint.load_pretrained(
            cls,
            path_or_hub_id,
            attn_implementation=attn_implementation,
            config=config,
            max_length=max_length,
            id2label=id2label,
            num_labels=num_labels,
            label2id=label2id,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            dtype=dtype if dtype is not None else torch_dtype,
            **kwargs,
        )

    def save_pretrained(self, directory: str | os.PathLike, **options) -> None:
        """Write `config.json` and `model.safetensors` in the Hugging Face format (transformers loads them).

        The directory is replaced all-or-nothing; saving over another checkpoint drops its
        preprocessor_config.json (save the feature extractor after the model). transformers'
        options (safe_serialization, state_dict, is_main_process, ...) are accepted; the format is
        always safetensors.
        """
        if options.get("is_main_process", True):  # other ranks of a distributed run write nothing
            checkpoint.save_pretrained(self, directory, state_dict=options.get("state_dict"))

    # ---- attention backend -----------------------------------------------------------------------
    @property
    def attn_implementation(self) -> str:
        return self._attn_implementation

    def set_attn_implementation(self, name: str) -> None:
        """Choose the attention backend: "eager" | "sdpa" | "triton" | "auto" (triton on CUDA if available, else sdpa)."""
        check_attn_implementation(name)
        for module in self.modules():
            if isinstance(module, PreTrainedAST):
                module._attn_implementation = name

    # ---- initialisation ------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        # ViT/DeiT's initialisation: truncated normal weights, zero biases, unit LayerNorms. Parameters
        # that belong to no layer (the [CLS] and distillation tokens, the position embeddings) are
        # random too (timm's choice), so a fresh model can tell positions apart.
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        else:
            for parameter in module.parameters(recurse=False):
                nn.init.trunc_normal_(parameter, std=std)

    # ---- transformers-style options -----------------------------------------------------------------
    def _output_options(self, output_attentions, output_hidden_states, return_dict, head_mask) -> tuple[bool, bool, bool]:
        """The call's options, falling back to the config's (as transformers does)."""
        if head_mask is not None:
            raise ValueError("head_mask is not supported by ast-min: mask heads by zeroing their weights instead")
        c = self.config
        return (
            c.output_attentions if output_attentions is None else output_attentions,
            c.output_hidden_states if output_hidden_states is None else output_hidden_states,
            c.use_return_dict if return_dict is None else return_dict,
        )

    def _check_input(self, input_values: torch.Tensor) -> None:
        c = self.config
        if isinstance(input_values, dict) and "input_values" in input_values:  # the extractor's BatchFeature
            raise ValueError(
                "the model got the extractor's whole output: call model(**features) or model(features.input_values)"
            )
        if not isinstance(input_values, torch.Tensor):
            raise ValueError(
                f"input_values must be a torch.Tensor of shape (batch, {c.max_length}, {c.num_mel_bins}), "
                f"got {type(input_values).__name__}; use ASTFeatureExtractor(..., return_tensors='pt')"
            )
        if input_values.dim() != 3 or tuple(input_values.shape[1:]) != (c.max_length, c.num_mel_bins):
            raise ValueError(
                f"input_values has shape {tuple(input_values.shape)}, but this model takes "
                f"(batch, max_length={c.max_length}, num_mel_bins={c.num_mel_bins}): pad or truncate the "
                "features to max_length (ASTFeatureExtractor does), or load the model with "
                "from_pretrained(..., max_length=N) to adapt it to N frames"
            )
        if not input_values.is_floating_point():
            raise ValueError(f"input_values must be floating point, got {input_values.dtype}")

    # ---- gradient checkpointing ----------------------------------------------------------------
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Keep only each block's input in training and recompute the block in the backward pass.

        The activations inside a block (attention scores, MLP width) are freed after the forward
        and rebuilt when the gradient needs them: the same gradients for one extra forward pass.
        """
        options = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        for module in self.modules():
            if isinstance(module, PreTrainedAST):
                module.gradient_checkpointing = True
                module._checkpoint_options = options

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, PreTrainedAST):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.gradient_checkpointing

    def _run_block(self, block: nn.Module, x: torch.Tensor, *args):
        """block(x, *args), recomputed in the backward pass when gradient checkpointing is on."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return recompute_in_backward(block, x, *args, **self._checkpoint_options)
        return block(x, *args)

    # ---- what transformers' models also tell ---------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameter count; exclude_embeddings leaves out the position embeddings and the two tokens."""
        total = 0
        for name, p in self.named_parameters():
            if only_trainable and not p.requires_grad:
                continue
            if exclude_embeddings and name.split(".")[-1] in ("position_embeddings", "cls_token", "distillation_token"):
                continue
            total += p.numel()
        return total
