"""The `ast-min` command line.

    ast-min features FILE...   log-mel features of audio files (the front end)
    ast-min classify FILE...   top-k labels of audio files
    ast-min train ...          fine-tune a model
    ast-min embed FILE...      embeddings of audio files, for downstream tasks
    ast-min export ...         the classifier as an ONNX file, checked against torch
    ast-min listen ...         classify live audio every hop (microphone, file, stdin)
    ast-min assignment ...     self-grading assignments: list, start, check, grade

Each sub-command is a module of `ast_min/commands/` (the assignments keep theirs in
`ast_min/assignments/cli.py`), which provides `add_arguments(parser)` and `run(args) -> int`: it
parses its options, calls the library, and prints. This file only dispatches: adding a sub-command
is one entry in COMMANDS. Only the chosen command's module is imported, so `ast-min classify` does
not pay for the training code's imports.

Errors ast-min raises on purpose (ValueError, FileNotFoundError, RuntimeError and their
subclasses) say what went wrong and how to fix it: they are printed as one line, exit status 2, as
are the operating system's own (OSError: a full disk, a permission denied), which name the file,
and the parser's (an unknown option, a value out of range: `Parser`). Ctrl-C exits with status 130
and one line (`ast-min train` says what was saved and how to resume). With the environment variable
AST_MIN_DEBUG=1 those errors are raised instead, with their full traceback: a bug inside torch or
numpy is otherwise one line like any refusal.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from importlib import import_module

from ast_min.commands import debugging

# sub-command -> (module, one-line help)
COMMANDS = {
    "features": ("ast_min.commands.features", "compute the log-mel features of audio files"),
    "classify": ("ast_min.commands.classify", "print the top-k labels of audio files"),
    "train": ("ast_min.commands.train", "fine-tune an AST on a folder, a manifest or a recipe"),
    "embed": ("ast_min.commands.embed", "save AST embeddings of audio files (any layer, pooled or per patch)"),
    "export": ("ast_min.commands.export", "export a classifier to ONNX, checked against torch with onnxruntime"),
    "listen": ("ast_min.commands.listen", "classify live audio (microphone, a file as if live, or PCM on stdin) every hop"),
    "assignment": ("ast_min.assignments.cli", "self-grading assignments: list, start, check; grade (instructors)"),
}


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
