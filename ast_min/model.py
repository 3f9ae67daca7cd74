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
L = 12 * 101 + 2 tokens. Parameter names follow the Hugging Face checkpoints closely, so
`checkpoint.py` maps them with one short table per format. What is not the paper lives elsewhere:
loading, saving, weight initialisation and the transformers-style options in `pretrained.py`, the
attention backends in `backends.py`, the output class and the loss choice in `compat.py`.

Shape legend: B batch, T frames, F mel bins, p patch size, f x t patch grid, P = f*t patches,
L = P + 2 tokens, D hidden size, H heads, Dh = D / H head dim, C labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ast_min.backends import ATTENTION_FUNCTIONS, resolve_attn_implementation
from ast_min.compat import ASTClassificationOutput, ASTOutput, classification_loss
from ast_min.config import ASTConfig
from ast_min.pretrained import PreTrainedAST

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


# ---- 3. attention -------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017, section 3.2.2), with three interchangeable backends.

    eager:  softmax(q k^T / sqrt(Dh)) v written out; the only one that can return the attention maps.
    sdpa:   torch's scaled_dot_product_attention (fused kernels on CPU and GPU).
    triton: ast-min's FlashAttention kernel (`ast_min.kernels.flash_attention`), GPU.
    All compute the same function (`backends.ATTENTION_FUNCTIONS` maps each name to its function);
    dropout on the probabilities only in training.
    """

    def __init__(self, config: ASTConfig):
        super().__init__()
        D = config.hidden_size
        if D % config.num_attention_heads:
            raise ValueError(
                f"hidden_size {D} is not divisible by num_attention_heads {config.num_attention_heads}: "
                "pick a head count that divides it"
            )
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

        # attention maps need the explicit softmax: output_attentions runs the eager backend whatever the choice
        if attn_implementation not in ATTENTION_FUNCTIONS:
            raise ValueError(f"unknown attn_implementation {attn_implementation!r}; use one of {tuple(ATTENTION_FUNCTIONS)}")
        attend = ATTENTION_FUNCTIONS["eager" if output_attentions else attn_implementation]
        y, probs = attend(q, k, v, self.scale, dropout)  # (B, H, L, Dh), and (B, H, L, L) or None
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, H, L, Dh) -> (B, L, H*Dh): heads side by side
        return self.output(y), (probs if output_attentions else None)


# ---- 4. the MLP and the transformer block -------------------------------------------------------


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


# ---- 5. the encoder -----------------------------------------------------------------------------


class ASTModel(PreTrainedAST):
    """The AST encoder: spectrogram (B, T, F) -> token states (B, L, D) and pooled output (B, D)."""

    def __init__(self, config: ASTConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.apply(self._init_weights)

    def forward(
        self,
        input_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        head_mask: None = None,
    ) -> ASTOutput | tuple:
        """input_values: (B, T, F) normalised log-mel features, T = config.max_length, F = config.num_mel_bins.

        Returns last_hidden_state (B, L, D), pooler_output (B, D), and on request hidden_states and
        attentions (None: the config's output_* settings). Attention maps need the explicit
        softmax, so output_attentions=True runs every layer's attention the eager way whatever the
        backend. return_dict=False gives the same outputs as a tuple.
        """
        output_attentions, output_hidden_states, return_dict = self._output_options(
            output_attentions, output_hidden_states, return_dict, head_mask
        )
        self._check_input(input_values)
        backend = resolve_attn_implementation(self._attn_implementation, input_values.device)
        # A model cast with .to(dtype) gets inputs in its dtype; under autocast the weights stay fp32.
        x = self.embeddings(input_values.to(self.embeddings.position_embeddings.dtype))  # (B, L, D)
        hidden_states, attentions = [x], []
        for block in self.layers:
            x, probs = self._run_block(block, x, backend, output_attentions)
            hidden_states.append(x)
            attentions.append(probs)
        x = self.layernorm(x)  # (B, L, D)
        pooled = (x[:, 0] + x[:, 1]) / 2  # (B, D): AST averages the [CLS] and distillation tokens
        out = ASTOutput(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


# ---- 6. the classification head and model -------------------------------------------------------


class ClassifierHead(nn.Module):
    """LayerNorm then Linear(D -> C), applied to the pooled output (AST's `mlp_head`)."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C)."""
        return self.dense(self.layernorm(pooled))


class ASTForAudioClassification(PreTrainedAST):
    """AST with its classification head: pooled output -> LayerNorm -> Linear -> logits (B, C)."""

    has_classifier = True  # checkpoint loading keeps or starts the head

    def __init__(self, config: ASTConfig):
        super().__init__(config)
        self.audio_spectrogram_transformer = ASTModel(config)
        self.classifier = ClassifierHead(config)
        self.classifier.apply(self._init_weights)

    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        head_mask: None = None,
    ) -> ASTClassificationOutput | tuple:
        """input_values: (B, T, F); labels: (B,) class ids, (B, C) multi-hot floats, or (B,) / (B, 1) regression targets.

        Returns logits (B, C) (apply a sigmoid for multi-label AudioSet heads, a softmax for
        single-label ones), the loss when labels are given, and the encoder's outputs.
        """
        output_attentions, output_hidden_states, return_dict = self._output_options(
            output_attentions, output_hidden_states, return_dict, head_mask
        )
        encoded = self.audio_spectrogram_transformer(input_values, output_attentions, output_hidden_states, True)
        logits = self.classifier(encoded.pooler_output)  # (B, C)
        loss = classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        out = ASTClassificationOutput(loss=loss, logits=logits, **encoded)
        return out if return_dict else out.to_tuple()


__all__ = ["ASTModel", "ASTForAudioClassification", "patchify"]
