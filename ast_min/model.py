"""The Audio Spectrogram Transformer (Gong, Chung & Glass, Interspeech 2021, section 2), in data-flow order.

    input_values (B, T, F)  log-mel spectrogram, T frames x F mel bins (1024 x 128 for AST-Base)
      -> patchify: (B, 1, F, T) cut into overlapping p x p patches with strides (sf, st)   section 2.1
         f = (F - p) // sf + 1 rows, t = (T - p) // st + 1 columns, flattened frequency-major
      -> linear projection of each flattened patch to D                                     (B, f*t, D)
      -> prepend [CLS] and distillation tokens, add learned position embeddings             (B, L, D)
      -> N pre-norm blocks: x + Attn(LN(x)); x + MLP(LN(x))                                  (B, L, D)
      -> final LayerNorm, pooled = (h[:, 0] + h[:, 1]) / 2                                   (B, D)
      -> head: LayerNorm + Linear                                                            (B, num_labels)

The encoder is DeiT-B (ViT-B/16 with a distillation token); AST-Base: D = 768, 12 layers, 12 heads,
L = 12 * 101 + 2 = 1214 tokens. Parameter names follow the Hugging Face checkpoints closely, so
`checkpoint.py` maps them with one short table per format.

Shape legend: B batch, T frames, F mel bins, p patch size, f x t patch grid, P = f*t patches,
L = P + 2 tokens, D hidden size, H heads, Dh = D / H head dim, C labels.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ast_min.config import ASTConfig

ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "triton", "auto")


@dataclass
class ASTOutput:
    """What a forward pass returns; the field names are transformers' so ported code keeps working.

    last_hidden_state: (B, L, D) after the final LayerNorm.
    pooler_output: (B, D), the mean of the [CLS] and distillation tokens.
    logits: (B, C), only from `ASTForAudioClassification`.
    loss: scalar, when `labels` were given.
    hidden_states: on request, num_hidden_layers + 1 tensors (B, L, D): the embeddings, then each
        block's output (the last one before the final LayerNorm, as in transformers).
    attentions: on request, num_hidden_layers tensors (B, H, L, L) of softmax probabilities.
    """

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# ---- 1. patches ---------------------------------------------------------------------------------


def patchify(input_values: torch.Tensor, patch_size: int, frequency_stride: int, time_stride: int) -> torch.Tensor:
    """Cut a batch of spectrograms into overlapping square patches, the explicit way.

    input_values: (B, T, F). Returns (B, f*t, p*p): patch (i, j) covers mel bins
    [i*sf, i*sf + p) and frames [j*st, j*st + p); patches are ordered frequency-major
    (index i*t + j) and each is flattened frequency-major too, the order a Conv2d weight
    (D, 1, p, p) has when flattened, so a Linear layer with that weight is the convolution.
    """
    spectrogram = input_values.transpose(1, 2)  # (B, F, T): frequency is the image's height
    patches = spectrogram.unfold(1, patch_size, frequency_stride)  # (B, f, T, p)
    patches = patches.unfold(2, patch_size, time_stride)  # (B, f, t, p_freq, p_time)
    B, f, t = patches.shape[:3]
    return patches.reshape(B, f * t, patch_size * patch_size)  # (B, P, p*p)


class PatchEmbeddings(nn.Module):
    """Project each p x p patch to D dimensions: a Conv2d with kernel p and strides (sf, st).

    `forward` runs the convolution (one fused call, the fast path); `forward_by_unfold` does the
    same computation as patchify + matmul, which is what the convolution means. Both are kept and
    tested equal.
    """

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.strides = (config.frequency_stride, config.time_stride)
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=config.patch_size, stride=self.strides)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, P, D)."""
        image = input_values.unsqueeze(1).transpose(2, 3)  # (B, 1, F, T)
        out = self.projection(image)  # (B, D, f, t)
        return out.flatten(2).transpose(1, 2)  # (B, f*t, D), frequency-major

    def forward_by_unfold(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, P, D), as explicit patches times the flattened kernel."""
        patches = patchify(input_values, self.patch_size, *self.strides)  # (B, P, p*p)
        weight = self.projection.weight.flatten(1)  # (D, 1, p, p) -> (D, p*p)
        return patches @ weight.T + self.projection.bias  # (B, P, D)


# ---- 2. tokens and positions --------------------------------------------------------------------


class Embeddings(nn.Module):
    """Patch embeddings with the [CLS] and distillation tokens in front, plus position embeddings.

    The two extra tokens come from DeiT; AST keeps both and averages them at the end. Position
    embeddings are learned, one per token: row 0 [CLS], row 1 distillation, then the f x t grid.
    """

    def __init__(self, config: ASTConfig):
        super().__init__()
        D = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, D))
        self.patch_embeddings = PatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.sequence_length, D))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, L, D)."""
        patches = self.patch_embeddings(input_values)  # (B, P, D)
        B = patches.shape[0]
        tokens = torch.cat(
            [self.cls_token.expand(B, -1, -1), self.distillation_token.expand(B, -1, -1), patches], dim=1
        )  # (B, L, D)
        return self.dropout(tokens + self.position_embeddings)


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


# ---- 3. attention -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    try:
        import kernels
    except ImportError:
        return False
    return bool(getattr(kernels, "TRITON_AVAILABLE", False))


def resolve_attn_implementation(name: str, device: torch.device) -> str:
    """Resolve "auto": "triton" on a CUDA device when the kernel is available, else "sdpa"; other names pass through."""
    if name == "auto":
        return "triton" if device.type == "cuda" and _triton_available() else "sdpa"
    return name


def _triton_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    try:
        import kernels
    except ImportError as e:
        raise RuntimeError(
            f"attn_implementation='triton' needs the ast-min `kernels` package and triton ({e}); "
            "install triton (pip install triton) or use attn_implementation='sdpa'"
        ) from None
    if not getattr(kernels, "TRITON_AVAILABLE", False) or not hasattr(kernels, "flash_attention"):
        raise RuntimeError(
            "attn_implementation='triton' but the Triton kernel is not available here "
            "(triton missing or the kernel not built); use attn_implementation='sdpa'"
        )
    return kernels.flash_attention(q, k, v, causal=False, sm_scale=scale)


class SelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017, section 3.2.2), with three interchangeable backends.

    eager:  softmax(q k^T / sqrt(Dh)) v written out; the only one that can return the attention maps.
    sdpa:   torch's scaled_dot_product_attention (fused kernels on CPU and GPU).
    triton: ast-min's FlashAttention kernel (`kernels.flash_attention`), GPU.
    All three compute the same function; dropout on the probabilities only in training.
    """

    def __init__(self, config: ASTConfig):
        super().__init__()
        D = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(D, D, bias=config.qkv_bias)
        self.key = nn.Linear(D, D, bias=config.qkv_bias)
        self.value = nn.Linear(D, D, bias=config.qkv_bias)
        self.output = nn.Linear(D, D)

    def forward(
        self, x: torch.Tensor, attn_implementation: str = "sdpa", output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, L, D) -> (B, L, D), and the (B, H, L, L) probabilities when output_attentions."""
        B, L, D = x.shape
        # (B, L, D) -> (B, L, H, Dh) -> (B, H, L, Dh): each head attends on its own slice of D
        q = self.query(x).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.key(x).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.value(x).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0

        probs = None
        if output_attentions or attn_implementation == "eager":
            scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, L, L)
            # half inputs take their softmax in float32 (exp over- and underflows early in fp16/bf16);
            # float32 and float64 keep their own precision
            softmax_dtype = torch.promote_types(q.dtype, torch.float32)
            probs = scores.softmax(dim=-1, dtype=softmax_dtype).to(q.dtype)
            y = F.dropout(probs, p=dropout, training=self.training) @ v  # (B, H, L, Dh)
        elif attn_implementation == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)  # (B, H, L, Dh)
        elif attn_implementation == "triton":
            if dropout > 0:
                raise ValueError(
                    "the Triton attention kernel has no attention dropout: set "
                    "attention_probs_dropout_prob=0 or train with attn_implementation='sdpa'"
                )
            y = _triton_attention(q, k, v, self.scale)  # (B, H, L, Dh)
        else:
            raise ValueError(f"unknown attn_implementation {attn_implementation!r}; use one of {ATTN_IMPLEMENTATIONS}")
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, H, L, Dh) -> (B, L, H*Dh): heads side by side
        return self.output(y), (probs if output_attentions else None)


# ---- 4. the transformer block -------------------------------------------------------------------


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear(D -> 4D), exact (erf) GELU, Linear(4D -> D)."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        if config.hidden_act != "gelu":
            raise ValueError(f"hidden_act {config.hidden_act!r} is not supported: AST uses 'gelu' (exact, erf)")
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block (ViT, Dosovitskiy et al. 2021, eq. 2-3).

    x = x + Dropout(Attn(LN(x)));  x = x + Dropout(MLP(LN(x))). LayerNorm eps is 1e-12 (BERT's),
    which the checkpoints were trained with.
    """

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SelfAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, x: torch.Tensor, attn_implementation: str = "sdpa", output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, D) -> (B, L, D), and the attention probabilities on request."""
        attended, probs = self.attention(self.layernorm_before(x), attn_implementation, output_attentions)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.mlp(self.layernorm_after(x)))
        return x, probs


# ---- 5. the models ------------------------------------------------------------------------------


class _Pretrained(nn.Module):
    """Loading, saving and backend selection shared by both public models (see checkpoint.py)."""

    config: ASTConfig

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        *,
        attn_implementation: str = "auto",
        config: ASTConfig | None = None,
        max_length: int | None = None,
        id2label: dict[int, str] | None = None,
    ):
        """Load a Hugging Face checkpoint (directory or hub id) or an original-repository `.pth` file.

        config: the architecture of a `.pth` file (which does not store one); default AST-Base with
            the patch grid read off the position embeddings.
        max_length: adapt the position embeddings to another number of frames
            (`adapt_position_embeddings`); default: the checkpoint's.
        id2label: a label set different from the checkpoint's gets a freshly initialised head
            (to fine-tune on new classes); the same label set keeps the trained head.
        """
        from ast_min import checkpoint

        return checkpoint.load_pretrained(
            cls,
            path_or_hub_id,
            attn_implementation=attn_implementation,
            config=config,
            max_length=max_length,
            id2label=id2label,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` in the Hugging Face format (transformers loads them)."""
        from ast_min import checkpoint

        checkpoint.save_pretrained(self, directory)

    @property
    def attn_implementation(self) -> str:
        return self._attn_implementation

    def set_attn_implementation(self, name: str) -> None:
        """Choose the attention backend: "eager" | "sdpa" | "triton" | "auto" (triton on CUDA if available, else sdpa)."""
        if name not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"unknown attn_implementation {name!r}; use one of {ATTN_IMPLEMENTATIONS}")
        for module in self.modules():
            if isinstance(module, _Pretrained):
                module._attn_implementation = name

    def _init_weights(self, module: nn.Module) -> None:
        # ViT/DeiT's initialisation: truncated normal weights, zero biases, unit LayerNorms. The tokens
        # and position embeddings are random too (timm's choice), so a fresh model can tell positions apart.
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, Embeddings):
            for p in (module.cls_token, module.distillation_token, module.position_embeddings):
                nn.init.trunc_normal_(p, std=std)


class ASTModel(_Pretrained):
    """The AST encoder: spectrogram (B, T, F) -> token states (B, L, D) and pooled output (B, D)."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self._attn_implementation = "auto"
        self.apply(self._init_weights)

    def forward(
        self,
        input_values: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ASTOutput:
        """input_values: (B, T, F) normalised log-mel features, T = config.max_length, F = config.num_mel_bins.

        Returns last_hidden_state (B, L, D), pooler_output (B, D), and on request hidden_states and
        attentions. Attention maps need the explicit softmax, so output_attentions=True runs every
        layer's attention the eager way whatever the backend.
        """
        self._check_input(input_values)
        backend = resolve_attn_implementation(self._attn_implementation, input_values.device)
        # A model cast with .to(dtype) gets inputs in its dtype; under autocast the weights stay fp32.
        x = self.embeddings(input_values.to(self.embeddings.position_embeddings.dtype))  # (B, L, D)
        hidden_states, attentions = [x], []
        for block in self.layers:
            x, probs = block(x, backend, output_attentions)
            hidden_states.append(x)
            attentions.append(probs)
        x = self.layernorm(x)  # (B, L, D)
        pooled = (x[:, 0] + x[:, 1]) / 2  # (B, D): AST averages the [CLS] and distillation tokens
        return ASTOutput(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def _check_input(self, input_values: torch.Tensor) -> None:
        c = self.config
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


class ASTForAudioClassification(_Pretrained):
    """AST with its classification head: pooled output -> LayerNorm -> Linear -> logits (B, C)."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.config = config
        self.audio_spectrogram_transformer = ASTModel(config)
        self.classifier = ClassifierHead(config)
        self._attn_implementation = "auto"
        self.classifier.apply(self._init_weights)

    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ASTOutput:
        """input_values: (B, T, F); labels: (B,) class ids, (B, C) multi-hot floats, or (B,) / (B, 1) regression targets.

        Returns logits (B, C) (apply a sigmoid for multi-label AudioSet heads, a softmax for
        single-label ones), the loss when labels are given, and the encoder's outputs.
        """
        out = self.audio_spectrogram_transformer(input_values, output_attentions, output_hidden_states)
        out.logits = self.classifier(out.pooler_output)
        if labels is not None:
            out.loss = classification_loss(out.logits, labels, self.config.problem_type)
        return out


class ClassifierHead(nn.Module):
    """LayerNorm then Linear(D -> C), applied to the pooled output (AST's `mlp_head`)."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C)."""
        return self.dense(self.layernorm(pooled))


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
        return F.cross_entropy(logits.view(-1, C), labels.view(-1).long(), ignore_index=-100)
    if problem_type == "multi_label_classification":
        if labels.shape != logits.shape:
            raise ValueError(
                f"multi-label targets must have the logits' shape {tuple(logits.shape)}, got {tuple(labels.shape)}; "
                "pass integer class ids (torch.long) for single-label classification"
            )
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {problem_type!r}")


def forward_flops(config: ASTConfig) -> float:
    """FLOPs (2 per multiply-add) of one clip's forward pass, by arithmetic on the config.

    Patch projection 2*P*p*p*D; per layer: q, k, v, output projections 8*L*D^2, attention scores and
    weighted sum 4*L^2*D, MLP 4*L*D*I; head 2*D*C. About 261 GFLOP for AST-Base (L = 1214), against
    ~35 for ViT-B/16 on a 224 x 224 image (L = 197): the long token sequence is AST's cost.
    """
    c = config
    L, D, I = c.sequence_length, c.hidden_size, c.intermediate_size
    per_layer = 8 * L * D * D + 4 * L * L * D + 4 * L * D * I
    return 2.0 * c.num_patches * c.patch_size**2 * D + c.num_hidden_layers * per_layer + 2.0 * D * c.num_labels


__all__ = [
    "ASTOutput",
    "ASTModel",
    "ASTForAudioClassification",
    "adapt_position_embeddings",
    "classification_loss",
    "patchify",
    "resolve_attn_implementation",
]
