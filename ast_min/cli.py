"""The `ast-min` command line.

    ast-min features FILE...   log-mel features of audio files (the front end)
    ast-min classify FILE...   top-k labels of audio files
    ast-min train ...          fine-tune a model

Each sub-command lives in the module that does the work, which provides `add_arguments(parser)`
and `run(args) -> int`; this file only dispatches. Only the chosen command's module is imported,
so `ast-min classify` does not pay for the training code's imports.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# sub-command -> (module, one-line help)
COMMANDS = {
    "features": ("ast_min.features_cli", "compute the log-mel features of audio files"),
    "classify": ("ast_min.classify", "print the top-k labels of audio files"),
    "train": ("ast_min.train", "fine-tune an AST on a folder, a manifest or a recipe"),
    "assignment": ("ast_min.assignments.cli", "self-grading assignments: list, start, check; grade (instructors)"),
}


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of `commands` (default: every sub-command) filled in."""
    parser = argparse.ArgumentParser(
        prog="ast-min",
        description="The Audio Spectrogram Transformer, from scratch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module)
        if commands is None or name in commands:
            import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = [a for a in argv[:1] if a in COMMANDS]  # the sub-command is the first argument
    args = build_parser(chosen).parse_args(argv)
    try:
        return import_module(args.module).run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Errors ast-min raises on purpose say what went wrong and how to fix it: print them plainly.
        print(f"ast-min {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
