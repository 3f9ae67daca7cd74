"""The `ast-min` sub-commands, one module each: it parses its options, calls the library, and prints.

Each module provides `add_arguments(parser)` and `run(args) -> int`; `ast_min/cli.py` lists them
and dispatches. `options.py` holds what several of them declare or check the same way. The
library never imports from here. This file stays free of imports beyond the standard library, so
that the dispatcher (and `ast-min --help`) loads nothing heavy before a command is chosen.
"""

import os

DEBUG_VARIABLE = "AST_MIN_DEBUG"


def debugging() -> bool:
    """Whether AST_MIN_DEBUG=1 asks for errors with their traceback instead of one line."""
    return os.environ.get(DEBUG_VARIABLE, "") == "1"
