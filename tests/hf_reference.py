"""Reference checkpoints for tests: transformers AST models with EVERY weight randomised.

A freshly constructed transformers AST has zero [CLS], distillation and position embeddings, unit
LayerNorms and zero biases; a test run on those would not notice a model that drops the position
embeddings or swaps the two tokens. These helpers overwrite every parameter with random values of
sensible scale, then save with transformers' own `save_pretrained`, so a checkpoint directory is
exactly what transformers writes (and ast-min must read).

Stable API (other test modules import it):
    tiny_config(**overrides) -> dict          kwargs of a small, fast AST config
    random_hf_model(config=None, *, seed=0, head=True, **overrides) -> transformers model (eval mode)
    save_random_hf_checkpoint(directory, config=None, *, seed=0, head=True, preprocessor=False,
                              **overrides) -> pathlib.Path
    randomise_(model, seed) -> model
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    patch_size=8,
    frequency_stride=6,
    time_stride=6,
    num_mel_bins=32,
    max_length=64,
    num_labels=5,
)


def tiny_config(**overrides) -> dict:
    """Keyword arguments of a small AST (5 x 10 patches, 2 layers): milliseconds per forward on a CPU."""
    base = dict(TINY)
    if "id2label" in overrides or "label2id" in overrides:
        base.pop("num_labels")  # the label names decide the count
    return {**base, **overrides}


def _config_kwargs(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):  # ast_min.ASTConfig or transformers.ASTConfig
        d = config.to_dict()
        keep = {
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
            "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins",
            "id2label", "label2id", "problem_type",
        }  # fmt: skip
        return {k: v for k, v in d.items() if k in keep}
    raise TypeError(f"config must be None, a dict or an ASTConfig, got {type(config).__name__}")


@torch.no_grad()
def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with seeded random values whose scale keeps activations O(1).

    Matrices ~ N(0, 1/fan_in) (unit-variance outputs); biases ~ N(0, 0.1^2); LayerNorm gains
    ~ 1 + N(0, 0.1^2); [CLS], distillation and position embeddings ~ N(0, 0.5^2) so they matter.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if "layernorm" in name and name.endswith("weight"):
            value = 1 + 0.1 * noise
        elif name.endswith("bias"):
            value = 0.1 * noise
        elif p.dim() >= 2 and "token" not in name and "position" not in name:
            fan_in = math.prod(p.shape[1:])
            value = noise / math.sqrt(fan_in)
        else:  # cls_token, distillation_token, position_embeddings
            value = 0.5 * noise
        p.copy_(value.to(p.dtype))
    return model


def random_hf_model(config=None, *, seed: int = 0, head: bool = True, **overrides):
    """A transformers ASTForAudioClassification (or ASTModel when head=False) with every weight random."""
    import transformers

    kwargs = {**_config_kwargs(config), **overrides}
    hf_config = transformers.ASTConfig(**kwargs)
    cls = transformers.ASTForAudioClassification if head else transformers.ASTModel
    model = cls(hf_config)
    return randomise_(model, seed).eval()


def save_random_hf_checkpoint(
    directory, config=None, *, seed: int = 0, head: bool = True, preprocessor: bool = False, **overrides
) -> Path:
    """Save a random transformers AST with `save_pretrained` into `directory`; return the path.

    preprocessor=True also writes transformers' `preprocessor_config.json` (AudioSet normalisation,
    the model's num_mel_bins and max_length), as the released checkpoints have.
    """
    directory = Path(directory)
    model = random_hf_model(config, seed=seed, head=head, **overrides)
    model.save_pretrained(directory)
    if preprocessor:
        import transformers

        transformers.ASTFeatureExtractor(
            num_mel_bins=model.config.num_mel_bins, max_length=model.config.max_length
        ).save_pretrained(directory)
    return directory
