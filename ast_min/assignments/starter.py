"""Generate a student's starter from the instructor source, nbgrader style.

Every block between a `### BEGIN SOLUTION` line and its `### END SOLUTION` line is replaced by one
`raise NotImplementedError(...)` at the block's indentation, naming the function to write and the
command that checks it. Nothing inside a block is copied, so no solution line reaches the student;
`solution_lines` lists them so the tests can prove it.
"""

from __future__ import annotations

import re

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_DEF = re.compile(r"^(\s*)def\s+(\w+)\s*\(")


def _enclosing_function(lines: list[str], index: int, indent: int) -> str | None:
    """The name of the innermost `def` above line `index` that is less indented than `indent`."""
    for line in reversed(lines[:index]):
        m = _DEF.match(line)
        if m and len(m.group(1)) < indent:
            return m.group(2)
    return None


def _blocks(source: str):
    """Yield (begin line index, end line index, indentation) for each solution block; refuse bad nesting."""
    lines = source.splitlines()
    begin = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == BEGIN:
            if begin is not None:
                raise ValueError(f"line {i + 1}: {BEGIN} inside another solution block (opened on line {begin + 1})")
            begin = i
        elif stripped == END:
            if begin is None:
                raise ValueError(f"line {i + 1}: {END} without a {BEGIN} above it")
            yield begin, i, len(lines[begin]) - len(lines[begin].lstrip())
            begin = None
    if begin is not None:
        raise ValueError(f"line {begin + 1}: {BEGIN} is never closed by {END}")


def make_starter(source: str, assignment: str) -> str:
    """The student's file: `source` with every solution block replaced by a NotImplementedError stub."""
    lines = source.splitlines()
    out, position = [], 0
    for begin, end, indent in _blocks(source):
        out.extend(lines[position:begin])
        function = _enclosing_function(lines, begin, indent)
        what = f"write the body of `{function}`" if function else "write this part"
        message = f"{what} (replace this line), then run: ast-min assignment check {assignment}"
        out.append(" " * indent + f"raise NotImplementedError({message!r})")
        position = end + 1
    out.extend(lines[position:])
    return "\n".join(out) + "\n"


def solution_ranges(source: str) -> list[tuple[int, int]]:
    """(begin, end) line indices (0-based) of each solution block's marker lines."""
    return [(begin, end) for begin, end, _ in _blocks(source)]


def solution_lines(source: str) -> list[str]:
    """Every non-blank line inside a solution block, stripped: what a starter must never contain."""
    lines = source.splitlines()
    found = []
    for begin, end, _ in _blocks(source):
        found.extend(line.strip() for line in lines[begin + 1 : end] if line.strip())
    return found
