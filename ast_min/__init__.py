"""ast-min: the Audio Spectrogram Transformer (Gong, Chung & Glass, Interspeech 2021), from scratch.

Data flows through one module per step (see README):

    audio.py      file -> mono float32 waveform at 16 kHz
    features.py   waveform -> log-mel filterbank (Kaldi fbank) -> normalised input_values (B, T, F)
    model.py      input_values -> patches -> transformer -> logits (B, num_labels)
    checkpoint.py Hugging Face and original-repository weights <-> ast-min names
    train.py      fine-tuning (data.py datasets and augmentation, metrics.py scores)
    cli.py        the `ast-min` command

Public names are imported lazily, so `import ast_min` stays cheap and a missing optional piece
(triton, for instance) only matters when it is used.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ASTConfig": "ast_min.config",
    "ASTFeatureExtractor": "ast_min.features",
    "compute_norm_stats": "ast_min.features",
    "load_audio": "ast_min.audio",
    "ASTModel": "ast_min.model",
    "ASTForAudioClassification": "ast_min.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ast_min' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
