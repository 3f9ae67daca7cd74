"""Generate a student's starter from the instructor source, nbgrader style.

Every block between a `### BEGIN SOLUTION` line and its `### END SOLUTION` line is replaced by one
`raise NotImplementedError(...)` at the block's indentation, naming the function to write and the
command that checks it. Nothing inside a block is copied, so no solution line reaches the student;
`solution_lines` lists them so the tests can prove it.

A source cites its chapter's sections by title, `§[The backward pass]`, and the starter gets the
section's current number from the chapter's headings (`section 5, "The backward pass"`), so a
renumbered chapter never leaves a stale reference; a title the chapter no longer has stops the
build. The headings are read from `notebooks/` in a checkout, and from `sections.py` (generated
from the same headings by tools/chapter_sections.py, tested to be current) where ast-min is
installed without the notebooks.
"""

from __future__ import annotations

import re
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_DEF = re.compile(r"^(\s*)def\s+(\w+)\s*\(")
REFERENCE = re.compile(r"§\[([^\]\n]+)\]")
# "# ## 5 · The backward pass", "# ### 1.2 A fused row softmax", "# ## 1. Predict, on paper"
HEADING = re.compile(r"^# #{2,4} (\d+(?:\.\d+)*)\.? (?:· )?(.+?)\s*$")
ROOT = Path(__file__).resolve().parents[2]  # the checkout, when ast-min runs from one


def headings(text: str) -> dict[str, str]:
    """{title: number} of a chapter's numbered section headings (its jupytext markdown lines)."""
    return {m.group(2): m.group(1) for m in map(HEADING.match, text.splitlines()) if m}


def chapter_sections(chapter: str) -> dict[str, str]:
    """{title: number} for `chapter` (a path such as notebooks/03_flash_attention_in_triton.py)."""
    path = ROOT / chapter
    if path.is_file():
        return headings(path.read_text())
    from ast_min.assignments.sections import SECTIONS

    return SECTIONS[chapter]


def resolve_references(source: str, chapter: str) -> str:
    """Every `§[Title]` in `source` as `section N, "Title"`, N from `chapter`'s headings; ValueError for a lost title."""
    sections = chapter_sections(chapter)

    def number(match):
        title = match.group(1)
        if title not in sections:
            raise ValueError(f"the source cites section {title!r}, which {chapter} does not have; its sections are "
                             + "; ".join(f"{n} {t}" for t, n in sections.items()))
        return f'section {sections[title]}, "{title}"'

    return REFERENCE.sub(number, source)


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
    """The student's file: `source` with every solution block replaced by a NotImplementedError stub, and its
    section references numbered from the chapter of `assignment`."""
    from ast_min.assignments import get

    lines = resolve_references(source, get(assignment).chapter).splitlines()
    out, position = [], 0
    for begin, end, indent in _blocks("\n".join(lines)):
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
