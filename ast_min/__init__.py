"""ast-min: the Audio Spectrogram Transformer (Gong, Chung & Glass, Interspeech 2021), from scratch.

Data flows through one module per step (see README):

    audio.py        file -> mono float32 waveform at 16 kHz
    features.py     waveform -> log-mel filterbank (Kaldi fbank), step by step (the paper's front end)
    extractor.py    audio of any accepted kind -> checked clips -> normalised input_values (B, T, F);
                    ASTFeatureExtractor, the batched entry points, compute_norm_stats
    model.py        input_values -> patches -> transformer -> logits (B, num_labels)
    checkpoint.py   Hugging Face and original-repository weights <-> ast-min names
    train.py        fine-tuning (recipes.py hyper-parameters, data/ datasets and augmentation,
                    metrics.py scores, run_folder.py checkpoints and resuming)

Using a trained model: classify.py, embed.py, listen.py and export.py, sharing inference.py (which
checkpoint, its features, the windows of a long recording). The `ast-min` command is cli.py, which
dispatches to one module per sub-command in commands/; the library never imports them.

Around them: config.py (ASTConfig), pretrained.py (loading, saving and options shared by the
models), backends.py (attention backends), device.py (the device and the torchrun rank),
compat.py (transformers-style outputs, settings files) and files.py (JSON, hub ids, all-or-nothing
writes).

Public names are imported lazily, so `import ast_min` stays cheap and a missing optional piece
(triton, for instance) only matters when it is used.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ASTConfig": "ast_min.config",
    "ASTFeatureExtractor": "ast_min.extractor",
    "BatchFeature": "ast_min.extractor",
    "compute_norm_stats": "ast_min.extractor",
    "load_audio": "ast_min.audio",
    "ASTModel": "ast_min.model",
    "ASTForAudioClassification": "ast_min.model",
    "SaveConfigCallback": "ast_min.trainer_callback",  # needs transformers
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ast_min' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
