"""The instructors' copy check: how much of one submission's graded code is another's, renamed and reformatted.

ast-min is the reference solution and it is public, so the easy cheat is to copy the library's
function, rename its variables and reformat it; the honour-code guard cannot see that (the copy
calls nothing). This module compares code after normalising away what copying changes, and
reports the pairs that share long runs of it.

Normalisation (`fingerprint`), per graded function and every module-level function it reaches:
the code is parsed, its docstrings and comments dropped, and each statement unparsed (so layout,
line breaks, parentheses, quotes and trailing commas no longer matter) and split by Python's
`tokenize`: every name the code binds itself (parameters, variables, its own helpers) becomes `V`,
every imported name `M`, every number `N` and every string `S`, while attribute and keyword names
(`.transpose`, `dim=`: the libraries' vocabulary, which a renamer cannot change) and operators stay.
Runs of independent assignments are put in one canonical order (a copy may shuffle them), and
block structure is kept as `{` `}` tokens. Each token remembers its line in the original file.

Comparison, by winnowing (Schleimer, Wilkerson & Aiken, "Winnowing: local algorithms for document
fingerprinting", SIGMOD 2003, the algorithm of MOSS): every K consecutive tokens are hashed, and in
every window of W consecutive hashes the smallest is kept as a fingerprint, so any shared run of
K + W - 1 tokens or more shares at least one fingerprint. Fingerprints two codes share are grown
into maximal runs of equal tokens, and the longest non-overlapping runs are kept, greedy string
tiling's way (Wise 1993, the algorithm of JPlag); the score is the tokens tiled over the tokens
compared, 2 |tiles| / (|a| + |b|), in [0, 1]. Renaming and reformatting change no token, so a copy
scores near 1; two independent solutions of the same algorithm share short idioms (`x.transpose(1,
2)`) but rarely K tokens in a row, and score low. The default threshold sits between the two, as
tests/test_similar.py checks with independently written solutions.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import tokenize
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

K = 12  # tokens per hashed k-gram: shorter runs are idioms every solution shares
W = 8  # winnowing window: every shared run of K + W - 1 = 19 tokens or more is found
MIN_TILE = 12  # shortest run of equal tokens that counts as shared code
THRESHOLD = 0.5  # default: pairs scoring above it are reported

# ast-min's own implementation of each assignment's graded functions (dotted names; methods as
# module.Class.method), compared with every submission as "ast-min".
LIBRARY = {
    "framing": ("ast_min.features.frame_signal", "ast_min.features.remove_dc", "ast_min.features.pre_emphasis",
                "ast_min.features.hanning_window"),
    "mel": ("ast_min.features.hz_to_mel", "ast_min.features.mel_filterbank", "ast_min.features.log_mel"),
    "patches": ("ast_min.model.patchify", "ast_min.model.PatchEmbeddings.forward_by_unfold"),
    "attention": ("ast_min.model.SelfAttention.forward", "ast_min.model.MLP.forward", "ast_min.model.Block.forward"),
    "flash": ("ast_min.kernels.reference.blockwise_attention", "ast_min.kernels.reference.blockwise_attention_backward"),
    "triton": ("ast_min.kernels.fused_attention._attn_fwd_step", "ast_min.kernels.fused_attention._attn_fwd",
               "ast_min.kernels.fused_attention.attention_forward"),
    "triton_backward": ("ast_min.kernels.fused_attention._attn_bwd_delta",
                        "ast_min.kernels.fused_attention._attn_bwd_dkdv_step",
                        "ast_min.kernels.fused_attention._attn_bwd_dkdv",
                        "ast_min.kernels.fused_attention._attn_bwd_dq_step",
                        "ast_min.kernels.fused_attention._attn_bwd_dq",
                        "ast_min.kernels.fused_attention.attention_backward"),
    "finetune": ("ast_min.checkpoint.adapt_position_embeddings", "ast_min.data.augment.spec_augment",
                 "ast_min.train.train"),
}


@dataclass
class Code:
    """One submission's normalised graded code: tokens, the line of each, and where it came from."""

    label: str
    tokens: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the file of each token (ast-min's code spans modules)


@dataclass
class Pair:
    a: str
    b: str
    score: float
    matches: list[list[int]]  # [a_first, a_last, b_first, b_last] line ranges, longest first

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "score": round(self.score, 4), "matches": self.matches}


# ---- normalisation ---------------------------------------------------------------------------------------------


def _bound(tree: ast.AST) -> set[str]:
    """Names the code binds itself: parameters, assignment and loop targets, its own functions and classes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
    return names


def _tokens(text: str, bound: set[str], imported: set[str]) -> list[str]:
    out, previous = [], ""
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT,
                        tokenize.ENDMARKER, tokenize.ENCODING):
            continue
        value = tok.string
        if tok.type == tokenize.NAME and previous != "." and not _keyword(value):
            value = "V" if value in bound else "M" if value in imported else value
        elif tok.type == tokenize.NUMBER:
            value = "N"
        elif tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_START", -1):
            value = "S"
        elif tok.type in (getattr(tokenize, "FSTRING_MIDDLE", -1), getattr(tokenize, "FSTRING_END", -1)):
            continue
        out.append(value)
        previous = tok.string
    return out


def _keyword(name: str) -> bool:
    import keyword

    return keyword.iskeyword(name) or keyword.issoftkeyword(name)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _reads_writes(node: ast.stmt) -> tuple[set[str], set[str]]:
    reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    writes = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return reads, writes


def _canonical_order(body: list[ast.stmt], key) -> list[ast.stmt]:
    """Runs of consecutive assignments in one order, independent of how they were written: a topological
    order of their dependencies (read after write, write after read or write), ties broken by their
    normalised text. Everything else keeps its place and bounds the runs."""
    out, run = [], []

    def flush():
        pending = list(run)
        deps = {id(s): _reads_writes(s) for s in pending}
        while pending:
            ready = [s for s in pending if not any(
                (deps[id(s)][0] & deps[id(t)][1]) or (deps[id(s)][1] & (deps[id(t)][0] | deps[id(t)][1]))
                for t in pending[: pending.index(s)])]
            first = min(ready, key=key)
            out.append(first)
            pending.remove(first)
        run.clear()

    for stmt in body:
        if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            run.append(stmt)
        else:
            flush()
            out.append(stmt)
    flush()
    return out


def _emit(code: Code, body: list[ast.stmt], bound: set[str], imported: set[str], path: str) -> None:
    def text_of(stmt):
        return " ".join(_tokens(ast.unparse(stmt), bound, imported))

    def add(tokens, line):
        code.tokens.extend(tokens)
        code.lines.extend([line] * len(tokens))
        code.files.extend([path] * len(tokens))

    def block(stmts, line):
        add(["{"], line)
        _emit(code, stmts, bound, imported, path)
        add(["}"], line)

    body = [s for s in body if not _is_docstring(s)]
    for stmt in _canonical_order(body, text_of):
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            add(["for", *_tokens(ast.unparse(stmt.target), bound, imported), "in",
                 *_tokens(ast.unparse(stmt.iter), bound, imported)], stmt.lineno)
            block(stmt.body, stmt.lineno)
            if stmt.orelse:
                block(stmt.orelse, stmt.orelse[0].lineno)
        elif isinstance(stmt, ast.While):
            add(["while", *_tokens(ast.unparse(stmt.test), bound, imported)], stmt.lineno)
            block(stmt.body, stmt.lineno)
        elif isinstance(stmt, ast.If):
            add(["if", *_tokens(ast.unparse(stmt.test), bound, imported)], stmt.lineno)
            block(stmt.body, stmt.lineno)
            if stmt.orelse:
                add(["else"], stmt.orelse[0].lineno)
                block(stmt.orelse, stmt.orelse[0].lineno)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            items = [t for item in stmt.items for t in _tokens(ast.unparse(item), bound, imported)]
            add(["with", *items], stmt.lineno)
            block(stmt.body, stmt.lineno)
        elif isinstance(stmt, ast.Try):
            add(["try"], stmt.lineno)
            block(stmt.body, stmt.lineno)
            for handler in stmt.handlers:
                add(["except", *(_tokens(ast.unparse(handler.type), bound, imported) if handler.type else [])],
                    handler.lineno)
                block(handler.body, handler.lineno)
            if stmt.finalbody:
                block(stmt.finalbody, stmt.finalbody[0].lineno)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add(["def", "V", *_tokens(ast.unparse(stmt.args), bound, imported)], stmt.lineno)
            block(stmt.body, stmt.lineno)
        else:
            add(_tokens(ast.unparse(stmt), bound, imported), stmt.lineno)


def _reachable(tree: ast.Module, names) -> list[ast.FunctionDef]:
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    order, todo = [], [n for n in names if n in defs]
    while todo:
        name = todo.pop(0)
        if defs[name] in order:
            continue
        order.append(defs[name])
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    return order


def fingerprint(source: str, functions, label: str, path: str = "") -> Code:
    """The normalised tokens of `functions` (and the module-level functions they reach) in `source`.

    Raises SyntaxError for a file Python cannot parse.
    """
    tree = ast.parse(source)
    code = Code(label)
    imported = _imported(tree)
    module_names = _bound(ast.Module([n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))], []))
    for fn in _reachable(tree, functions):
        bound = (_bound(fn) | module_names) - imported
        _emit(code, [fn], bound, imported, path)
    return code


def library_code(assignment: str) -> Code:
    """ast-min's own implementation of the assignment's functions, as the submission `ast-min`."""
    code = Code("ast-min")
    for dotted in LIBRARY.get(assignment, ()):
        module_name, _, name = dotted.rpartition(".")
        try:
            obj = import_module(module_name)
        except ImportError:  # a method: module.Class.method
            module_name, _, cls = module_name.rpartition(".")
            obj = getattr(import_module(module_name), cls)
        target = getattr(obj, name)
        target = getattr(target, "fn", target)  # a @triton.jit kernel: its Python function
        path = inspect.getsourcefile(target)
        lines, first = inspect.getsourcelines(target)
        module_tree = ast.parse(Path(path).read_text())
        imported = _imported(module_tree)
        module_names = _bound(ast.Module([n for n in module_tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))], []))
        tree = ast.parse("".join(_dedent(lines)))
        ast.increment_lineno(tree, first - 1)
        bound = (_bound(tree) | module_names) - imported
        _emit(code, tree.body, bound, imported, path)
    return code


def _dedent(lines: list[str]) -> list[str]:
    import textwrap

    return textwrap.dedent("".join(lines)).splitlines(keepends=True)


# ---- winnowing and tiling -----------------------------------------------------------------------------------------


def _hash(tokens: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(tokens).encode(), digest_size=8).digest(), "little")


def winnow(tokens: list[str], k: int = K, w: int = W) -> dict[int, list[int]]:
    """{hash: [positions]} of the fingerprints: the rightmost smallest k-gram hash of every window of w."""
    hashes = [_hash(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]
    chosen: dict[int, list[int]] = {}
    last = -1
    for start in range(max(len(hashes) - w + 1, 1 if hashes else 0)):
        window = hashes[start : start + w]
        smallest = min(window)
        position = start + max(i for i, h in enumerate(window) if h == smallest)
        if position != last:
            chosen.setdefault(hashes[position], []).append(position)
            last = position
    return chosen


def tiles(a: list[str], b: list[str], k: int = K, w: int = W, min_tile: int = MIN_TILE) -> list[tuple[int, int, int]]:
    """Non-overlapping runs of equal tokens (a_start, b_start, length), longest first, seeded by shared fingerprints."""
    fa, fb = winnow(a, k, w), winnow(b, k, w)
    runs = set()
    for h in fa.keys() & fb.keys():
        for i in fa[h]:
            for j in fb[h]:
                if a[i : i + k] != b[j : j + k]:
                    continue  # a hash collision
                while i > 0 and j > 0 and a[i - 1] == b[j - 1]:  # grow the run both ways
                    i, j = i - 1, j - 1
                n = 0
                while i + n < len(a) and j + n < len(b) and a[i + n] == b[j + n]:
                    n += 1
                runs.add((i, j, n))
    used_a, used_b, out = set(), set(), []
    for i, j, n in sorted(runs, key=lambda r: (-r[2], r[0], r[1])):
        # the part of this run not yet tiled, on both sides (greedy string tiling keeps tiles disjoint)
        start = 0
        while start < n:
            while start < n and (i + start in used_a or j + start in used_b):
                start += 1
            end = start
            while end < n and i + end not in used_a and j + end not in used_b:
                end += 1
            if end - start >= min_tile:
                out.append((i + start, j + start, end - start))
                used_a.update(range(i + start, i + end))
                used_b.update(range(j + start, j + end))
            start = end
    return sorted(out, key=lambda t: -t[2])


def compare(a: Code, b: Code) -> Pair:
    found = tiles(a.tokens, b.tokens)
    shared = sum(n for _, _, n in found)
    total = len(a.tokens) + len(b.tokens)
    # first and last line of each tile (statements put in canonical order may come from lines out of order)
    matches = [[min(a.lines[i : i + n]), max(a.lines[i : i + n]), min(b.lines[j : j + n]), max(b.lines[j : j + n])]
               for i, j, n in found]
    return Pair(a.label, b.label, 2 * shared / total if total else 0.0, matches)


def report(codes: list[Code], library: Code | None = None, instructor: Code | None = None,
           threshold: float = THRESHOLD) -> list[Pair]:
    """Every pair of submissions, and each against ast-min and the instructor, scoring above `threshold`, best first."""
    pairs = [compare(a, b) for n, a in enumerate(codes) for b in codes[n + 1 :]]
    for reference in (library, instructor):
        if reference is not None and reference.tokens:
            pairs += [compare(a, reference) for a in codes]
    return sorted((p for p in pairs if p.score > threshold), key=lambda p: (-p.score, p.a, p.b))


def check(assignment: str, submissions: list[tuple[str, str]], threshold: float = THRESHOLD) -> tuple[list[Pair], list[str]]:
    """(pairs above threshold, problems) for submissions [(label, source)] of `assignment`.

    A submission that does not parse, or defines none of the graded functions, is left out and named
    in `problems`.
    """
    from ast_min.assignments import get

    a = get(assignment)
    codes, problems = [], []
    for label, source in submissions:
        try:
            code = fingerprint(source, a.functions, label)
        except SyntaxError as e:
            problems.append(f"{label}: not compared, Python cannot parse it (line {e.lineno}: {e.msg})")
            continue
        if not code.tokens:
            problems.append(f"{label}: not compared, it defines none of {', '.join(a.functions)}")
            continue
        codes.append(code)
    instructor = fingerprint(a.source.read_text(), a.functions, "instructor")
    return report(codes, library_code(assignment), instructor, threshold), problems


def format_pairs(pairs: list[Pair]) -> str:
    """One line per pair, most similar first, with its matching line ranges."""
    if not pairs:
        return "no pair above the threshold"
    lines = []
    for p in pairs:
        ranges = ", ".join(f"{a1}-{a2}~{b1}-{b2}" for a1, a2, b1, b2 in p.matches[:6])
        more = f" (+{len(p.matches) - 6} more)" if len(p.matches) > 6 else ""
        lines.append(f"{p.score:.2f}  {p.a}  ~  {p.b}   lines {ranges}{more}")
    return "\n".join(lines)
