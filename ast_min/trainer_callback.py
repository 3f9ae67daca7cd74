"""SaveConfigCallback: transformers' Trainer checkpoints of an ast-min model reload with `from_pretrained(dir)`.

transformers' `Trainer` saves a model that is not one of its own classes as its weights alone
(`model.safetensors`): its `checkpoint-N` folders, and what `save_model()` / `push_to_hub()` write to
`output_dir`, then lack the `config.json` that `from_pretrained` reads. This callback writes the model's
config beside them:

    trainer = transformers.Trainer(model=model, args=args, ..., callbacks=[SaveConfigCallback()])

Needs transformers (the Trainer's own requirement); ast-min's own `ast-min train` needs neither.
"""

from __future__ import annotations

import os

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ast_min.config import ASTConfig


def _config(model) -> ASTConfig | None:
    model = getattr(model, "module", model)  # DDP and similar wrappers hold the model as .module
    config = getattr(model, "config", None)
    return config if isinstance(config, ASTConfig) else None


class SaveConfigCallback(TrainerCallback):
    """Writes `config.json` into every checkpoint folder the Trainer saves, and into `output_dir` at the end."""

    def on_save(self, args, state, control, model=None, **kwargs):
        # Called right after the Trainer wrote checkpoint-<global_step> (its own naming).
        config = _config(model)
        if config is not None and state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                config.save_pretrained(folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        # `save_model()` and `push_to_hub()` write the weights to output_dir; the config goes there too.
        config = _config(model)
        if config is not None and state.is_world_process_zero:
            os.makedirs(args.output_dir, exist_ok=True)
            config.save_pretrained(args.output_dir)
