"""The AST classifier as the grading worker builds it: architecture only, self-contained (torch, no ast-min).

The `finetune` grader hands the student a model: `ctx.remote(model)` sends ast-min's
`ASTForAudioClassification` across the boundary as its settings (`config.to_dict()`) and weights,
and the worker, which cannot import ast-min, rebuilds it with this file (`BUILDERS`). Module and
parameter names are ast-min's (and so the checkpoint's), so the weights load strictly; the forward
pass is the same computation (tests/test_assignments.py checks the logits agree). What a student's
code may use is what the assignment's text promises: `model(x).logits` (B, C), `model.config` with
its fields and `replace(**changes)`, `model.classifier`, and everything an `nn.Module` has.

Shape legend: B batch, T frames, F mel bins, f x t patch grid, L = f*t + 2 tokens, D hidden size,
H heads, Dh head dim, C labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ASTConfig:
    """The settings of config.json as attributes; `replace` gives a changed copy, as ast-min's config does."""

    def __init__(self, settings: dict):
        settings = dict(settings)
        labels = settings.pop("id2label", None) or {}
        settings.pop("label2id", None)
        for name, value in settings.items():
            if not isinstance(getattr(type(self), name, None), property):  # derived sizes are recomputed
                setattr(self, name, value)
        self.id2label = {int(i): str(label) for i, label in dict(labels).items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict:
        return {label: i for i, label in self.id2label.items()}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def frequency_out_dimension(self) -> int:
        return (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1

    @property
    def time_out_dimension(self) -> int:
        return (self.max_length - self.patch_size) // self.time_stride + 1

    @property
    def sequence_length(self) -> int:
        return self.frequency_out_dimension * self.time_out_dimension + 2

    def to_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if k != "id2label"}
        d["id2label"] = {str(i): label for i, label in self.id2label.items()}
        return d

    def replace(self, **changes) -> "ASTConfig":
        d = self.to_dict()
        if "num_labels" in changes and "id2label" not in changes:
            changes["id2label"] = {i: f"LABEL_{i}" for i in range(changes.pop("num_labels"))}
        d.update(changes)
        return ASTConfig(d)

    def __repr__(self) -> str:
        return f"ASTConfig({', '.join(f'{k}={v!r}' for k, v in sorted(vars(self).items()))})"


class PatchEmbeddings(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=config.patch_size,
                                    stride=(config.frequency_stride, config.time_stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.unsqueeze(1).transpose(2, 3)  # (B, T, F) -> (B, 1, F, T)
        return self.projection(image).flatten(2).transpose(1, 2)  # (B, D, f, t) -> (B, f*t, D), frequency-major


class Embeddings(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        D = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, D))
        self.patch_embeddings = PatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.sequence_length, D))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(x)  # (B, P, D)
        B = patches.shape[0]
        tokens = torch.cat([self.cls_token.expand(B, -1, -1), self.distillation_token.expand(B, -1, -1), patches], 1)
        return self.dropout(tokens + self.position_embeddings)  # (B, L, D)


class SelfAttention(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        D = config.hidden_size
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(D, D, bias=config.qkv_bias)
        self.key = nn.Linear(D, D, bias=config.qkv_bias)
        self.value = nn.Linear(D, D, bias=config.qkv_bias)
        self.output = nn.Linear(D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape

        def heads(t):  # (B, L, D) -> (B, H, L, Dh)
            return t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.output(y.transpose(1, 2).reshape(B, L, D))  # (B, H, L, Dh) -> (B, L, D)


class MLP(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SelfAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.layernorm_before(x)))
        return x + self.dropout(self.mlp(self.layernorm_after(x)))


class ASTModel(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(x.to(self.embeddings.position_embeddings.dtype))  # (B, L, D)
        for block in self.layers:
            h = block(h)
        h = self.layernorm(h)
        return (h[:, 0] + h[:, 1]) / 2  # (B, D): the [CLS] and distillation tokens averaged


class ClassifierHead(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.layernorm(pooled))


class Output:
    """What `model(x)` returns: `.logits` (B, C), and `.loss` (cross-entropy) when labels were given."""

    def __init__(self, logits: torch.Tensor, loss: torch.Tensor | None):
        self.logits, self.loss = logits, loss

    def __getitem__(self, key):
        return getattr(self, key)


class ASTForAudioClassification(nn.Module):
    def __init__(self, config: ASTConfig):
        super().__init__()
        self.config = config
        self.audio_spectrogram_transformer = ASTModel(config)
        self.classifier = ClassifierHead(config)

    def forward(self, input_values: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        logits = self.classifier(self.audio_spectrogram_transformer(input_values))  # (B, C)
        return Output(logits, F.cross_entropy(logits, labels) if labels is not None else None)


def build_classifier(data: dict) -> ASTForAudioClassification:
    """The model from {"config": settings, "state": weights, "training": bool}."""
    model = ASTForAudioClassification(ASTConfig(data["config"]))
    model.load_state_dict(data["state"], strict=True)
    return model.train(bool(data.get("training", False)))


BUILDERS = {"ast_classifier": build_classifier}
