"""What several sub-commands declare or check the same way: shared options, checked while they are parsed.

Option values are checked where they are parsed (`checked`): a duration, a size or a rate outside
what it can mean is refused before anything is loaded, with the message the Python API gives.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from ast_min.audio import MAX_SECONDS
from ast_min.features import SAMPLING_RATE, num_frames
from ast_min.inference import MAX_HOP_SECONDS, check_hop

# The frames of the longest audio ast-min loads (audio.MAX_SECONDS): more could only ever be padding.
MAX_FRAMES = num_frames(MAX_SECONDS * SAMPLING_RATE)


def checked(convert: Callable[[str], object], check: Callable[[object], None]) -> Callable[[str], object]:
    """An argparse `type=`: `convert` the text (int, float), then `check` the value.

    `check` is the function the Python API calls on the same value; it raises a ValueError whose
    message names the option and its bounds, which becomes the parser's one-line error, so the
    option is refused while it is parsed, before any file or model is loaded.
    """

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if convert is int else 'a number'}, got {text!r}") from None
        try:
            check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = convert.__name__  # argparse names the type in its own messages
    return parse


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """`--checkpoint`, as every command that loads a trained model takes it (resolved by
    `ast_min.inference.resolve_checkpoint`)."""
    parser.add_argument(
        "--checkpoint", metavar="DIR|HUB_ID|FILE.pth",
        help="a Hugging Face checkpoint directory, a hub id (online), or an original-repository .pth "
        "(default: the model shipped in ast_min/default_model)",
    )  # fmt: skip


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device`, as every inference command takes it (resolved by `ast_min.device.resolve_device`)."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda when available)")


def add_hop_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--hop SECONDS`, as every command that slides windows takes it: checked while it is parsed."""
    bounds = f" (one sample, 1/{SAMPLING_RATE} s, to {MAX_HOP_SECONDS // 3600} h)"
    parser.add_argument("--hop", type=checked(float, check_hop), default=None, metavar="SECONDS", help=help_text + bounds)


def check_max_length(max_length) -> None:
    """Refuse a --max-length that is not a whole number of frames from 1 to MAX_FRAMES."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or not 1 <= max_length <= MAX_FRAMES:
        raise ValueError(
            f"--max-length must be a number of frames from 1 to {MAX_FRAMES} (10 ms each; {MAX_SECONDS // 3600} h, "
            f"the longest audio ast-min reads), got {max_length!r}"
        )
