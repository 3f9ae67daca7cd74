"""The `ast-min` command line.

    ast-min features FILE...   log-mel features of audio files (the front end)
    ast-min classify FILE...   top-k labels of audio files
    ast-min train ...          fine-tune a model
    ast-min embed FILE...      embeddings of audio files, for downstream tasks
    ast-min export ...         the classifier as an ONNX file, checked against torch
    ast-min listen ...         classify live audio every hop (microphone, file, stdin)
    ast-min assignment ...     self-grading assignments: list, start, check, grade

Each sub-command lives in the module that does the work, which provides `add_arguments(parser)`
and `run(args) -> int`; this file dispatches, and holds what several commands declare or check the
same way (`add_checkpoint_argument`, `add_device_argument`, `resolve_device`). Only the chosen
command's module is imported, so `ast-min classify` does not pay for the training code's imports.

Errors ast-min raises on purpose (ValueError, FileNotFoundError, RuntimeError and their
subclasses) say what went wrong and how to fix it: they are printed as one line, exit status 2, as
are the operating system's own (OSError: a full disk, a permission denied), which name the file,
and the parser's (an unknown option, a value out of range: `Parser`). Ctrl-C exits with status 130
and one line (`ast-min train` says what was saved and how to resume). With the environment variable
AST_MIN_DEBUG=1 those errors are raised instead, with their full traceback: a bug inside torch or
numpy is otherwise one line like any refusal.

Option values are checked where they are parsed (`checked`): a duration, a size or a rate outside
what it can mean is refused before anything is loaded, with the message the Python API gives.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Callable
from importlib import import_module

# sub-command -> (module, one-line help)
COMMANDS = {
    "features": ("ast_min.features_cli", "compute the log-mel features of audio files"),
    "classify": ("ast_min.classify", "print the top-k labels of audio files"),
    "train": ("ast_min.train", "fine-tune an AST on a folder, a manifest or a recipe"),
    "embed": ("ast_min.embed", "save AST embeddings of audio files (any layer, pooled or per patch)"),
    "export": ("ast_min.export", "export a classifier to ONNX, checked against torch with onnxruntime"),
    "listen": ("ast_min.listen", "classify live audio (microphone, a file as if live, or PCM on stdin) every hop"),
    "assignment": ("ast_min.assignments.cli", "self-grading assignments: list, start, check; grade (instructors)"),
}


DEBUG_VARIABLE = "AST_MIN_DEBUG"


def debugging() -> bool:
    """Whether AST_MIN_DEBUG=1 asks for errors with their traceback instead of one line."""
    return os.environ.get(DEBUG_VARIABLE, "") == "1"


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (argparse prints the whole usage first) pointing to --help.

    Arguments no sub-command knows are reported by the sub-command's parser, which names it.
    """

    def error(self, message: str):
        # A checked option's message names the option itself ("--hop must be ..."): say it once.
        message = re.sub(r"^argument (\S+): (?=\1 )", "", message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        known, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(self, "commands", {}).get(getattr(known, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        return known


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


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of `commands` (default: every sub-command) filled in."""
    parser = Parser(
        prog="ast-min",
        description="The Audio Spectrogram Transformer, from scratch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = {}
    for name, (module, help_text) in COMMANDS.items():
        command = parser.commands[name] = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module)
        if commands is None or name in commands:
            import_module(module).add_arguments(command)
    return parser


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """`--checkpoint`, as every command that loads a trained model takes it (resolved by
    `ast_min.classify.resolve_checkpoint`)."""
    parser.add_argument(
        "--checkpoint", metavar="DIR|HUB_ID|FILE.pth",
        help="a Hugging Face checkpoint directory, a hub id (online), or an original-repository .pth "
        "(default: the model shipped in ast_min/default_model)",
    )  # fmt: skip


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device`, as every inference command takes it (resolved by `resolve_device`)."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda when available)")


def resolve_device(name: str, option: str = "--device"):
    """A torch.device from a device option: "auto" (CUDA when available, else the CPU), "cpu", "cuda",
    "cuda:N" or "mps", refused with a message naming `option` when this machine does not have it."""
    import torch  # here, not at the top: `ast-min --help` and the parser need no torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{option} {name!r} is not a device ({e}): use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {name}: this machine has no CUDA device (or torch was built without CUDA): "
                             "use --device cpu, or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0: use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{option} mps: this machine has no Apple GPU (MPS): use --device cpu, or auto")
    elif device.type != "cpu":
        raise ValueError(f"{option} {name}: ast-min runs on cpu, cuda or mps, not {device.type}")
    return device


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = [a for a in argv[:1] if a in COMMANDS]  # the sub-command is the first argument
    try:
        args = build_parser(chosen).parse_args(argv)
    except SystemExit as e:  # a bad option, already printed as one line by Parser.error
        if not e.code:  # --help, which exits 0
            raise
        return e.code
    args.argv = argv  # the command as typed, for messages that tell the user what to run next
    format_warning = warnings.formatwarning
    # Warnings (a file cut short, a skipped clip) read as one line from ast-min, not as Python source locations.
    warnings.formatwarning = lambda message, category, *_, **__: f"ast-min {args.command}: warning: {message}\n"
    try:
        return import_module(args.module).run(args)
    except (ValueError, OSError, RuntimeError) as e:
        if debugging():
            raise
        print(f"ast-min {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # numpy names the size it could not allocate; torch says less
        if debugging():
            raise
        print(f"ast-min {args.command}: error: out of memory ({e or 'an allocation failed'}); the options or the "
              f"input ask for more than this machine has: use smaller sizes (--max-length, --num-mel-bins, "
              f"--batch-size) or fewer files at once", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ast-min {args.command}: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, the shell's convention
    finally:
        warnings.formatwarning = format_warning


if __name__ == "__main__":
    sys.exit(main())
