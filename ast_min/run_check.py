"""Is my run normal? A training run's epochs compared with the recipe's committed reference run.

A recipe with a reference (so far `synthetic`, the embedded model's) ships the per-epoch history of
the run that produced its published result: training loss, held-out loss, accuracy and mAP, as
`ast-min train` writes them to `history.json`. `ast-min train` prints, after each epoch's log line,
how the current run compares at the same epoch, and flags a run that is far behind:

    vs reference, epoch 3: train loss 1.2000 (reference 0.9500, +26 %), accuracy 0.610 (reference 0.700)

"Far behind" is judged on the training loss, the quantity every run minimises, as a pace: the run
is flagged when its loss after epoch e is still above the reference's after epoch e // 2 (learning
at under half the reference's speed), or above the reference's first-epoch loss after that epoch
(not learning, or diverging). A single reference run cannot estimate the run-to-run spread; a pace
test needs none: it stays quiet for any spread smaller than what the reference gains between
epochs e // 2 and e, which is large early (where a bad learning rate or broken labels show) and
shrinks only once the curve is flat (where a late, small gap matters little).

Only runs of the unchanged recipe are compared: a run with other sizes, rates or data has no
reference, and `compare_with_reference` returns None for it.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from ast_min.recipes import Recipe, get_recipe

# recipe name -> its reference history, a JSON file {"recipe", "command", "machine", "date", "history": [...]}
REFERENCE_FILES = {"synthetic": Path(__file__).parent / "default_model" / "reference_history.json"}

# The per-epoch fields a reference keeps (the names of `ast-min train`'s history.json).
FIELDS = ("epoch", "train_loss", "eval_loss", "eval_accuracy", "eval_mAP")


@lru_cache(maxsize=None)
def _load(path: Path) -> tuple[dict, ...]:
    with open(path) as f:
        document = json.load(f)
    history = document["history"] if isinstance(document, dict) else document
    for record in history:
        missing = [name for name in FIELDS if name not in record]
        if missing:
            raise ValueError(f"{path}: a reference epoch lacks {', '.join(missing)}; regenerate it from a history.json")
    return tuple(sorted(({k: record[k] for k in FIELDS} for record in history), key=lambda r: r["epoch"]))


def reference_history(recipe_name: str) -> list[dict] | None:
    """The reference run's epochs of recipe `recipe_name` (dicts with `FIELDS`), or None if it has none."""
    path = REFERENCE_FILES.get(recipe_name)
    if path is None or not path.is_file():
        return None
    return [dict(record) for record in _load(path)]


def _is_the_preset(recipe: Recipe) -> bool:
    try:
        return recipe == get_recipe(recipe.name)
    except ValueError:  # a custom recipe name
        return False


def compare_with_reference(recipe: Recipe | str, epoch: int, metrics: dict) -> str | None:
    """One line comparing epoch `epoch` (1-based) of a run with the reference run of the same recipe.

    `recipe` is a `Recipe` (compared only if it equals its preset: a changed recipe has no
    reference) or a preset's name. `metrics` holds at least `train_loss`, and optionally
    `eval_loss`, `eval_accuracy` and `eval_mAP` (a `history.json` record). Returns None when there
    is nothing to compare with (no reference, a changed recipe, or an epoch past the reference's
    last). A run far behind the reference (see the module docstring) gets a warning at the end.
    """
    if isinstance(recipe, Recipe):
        if not _is_the_preset(recipe):
            return None
        recipe = recipe.name
    history = reference_history(recipe)
    if not history or "train_loss" not in metrics:
        return None
    by_epoch = {record["epoch"]: record for record in history}
    if epoch not in by_epoch:
        return None
    reference = by_epoch[epoch]
    loss = float(metrics["train_loss"])
    parts = [f"train loss {loss:.4f} (reference {reference['train_loss']:.4f}, "
             f"{100 * (loss / reference['train_loss'] - 1):+.0f} %)"]
    if "eval_loss" in metrics:
        parts.append(f"eval loss {metrics['eval_loss']:.4f} (reference {reference['eval_loss']:.4f})")
    for name, label in (("eval_accuracy", "accuracy"), ("eval_mAP", "mAP")):
        if name in metrics:
            parts.append(f"{label} {metrics[name]:.3f} (reference {reference[name]:.3f})")
    line = f"vs reference, epoch {epoch}: " + ", ".join(parts)
    warning = _warning(history, epoch, loss)
    return f"{line}  -- {warning}" if warning else line


def _warning(history: list[dict], epoch: int, loss: float) -> str | None:
    """Why a run whose training loss is `loss` after `epoch` epochs is far off the reference, or None."""
    first = history[0]
    if not math.isfinite(loss) or (epoch > first["epoch"] and loss > first["train_loss"]):  # NaN, or worse than epoch 1
        return (f"FAR OFF: the loss is above the reference's first epoch ({first['train_loss']:.4f}); the run is not "
                "learning: check the learning rate, the data and the labels")
    half = epoch // 2
    earlier = [record for record in history if record["epoch"] <= half]
    if earlier and loss > earlier[-1]["train_loss"]:
        return (f"FAR OFF: the loss is still above the reference's after epoch {half} ({earlier[-1]['train_loss']:.4f}): "
                "learning at under half the reference's pace: check the learning rate, the data and the labels")
    return None
