#!/usr/bin/env python3
"""Import-circle check for `src/` (run by `make lint`).

Every `.rs` file under `src/` is a node. An edge A -> B is a path in A's non-test code that
names an item of B: `crate::x::y`, `super::y`, `self::y` (in `use` or inline). Test modules
(`#[cfg(test)] mod ... { ... }` and `#[cfg(test)] mod x;`) are left out: tests may reach
anywhere. A path resolves to the longest module prefix that exists as a file, so
`crate::store::sqlite::SqliteStore` is an edge to `store/sqlite.rs` and `crate::store::Store`
one to `store/mod.rs`.

A circle (a strongly connected component of more than one file) fails the check, listing its
files and the lines that close it. So does an edge that goes up the layers below (a file may
name its own layer or any layer under it). `--graph` prints every edge instead.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{")


# The layers, top to bottom: the first prefix (of the path under src/) that matches decides.
LAYERS = [
    ("command line", ("main.rs", "lib.rs", "cli")),
    ("composition", ("app",)),
    ("transports", ("transport",)),
    ("domain services", ("auth", "authz_server", "login", "oidc", "projects", "session", "external", "metadata", "ratelimit")),
    ("store", ("store",)),
    ("core", ("config", "keys", "clock", "secret", "sealed", "metrics", "public_url", "pb")),
]


def layer_of(path: Path) -> int:
    rel = path.relative_to(SRC).as_posix()
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if rel == p or rel.startswith(p + "/") or rel.startswith(p + ".") or rel.startswith(p + "_"):
                return rank
    raise SystemExit(f"check_layers: src/{rel} is in no layer; add it to LAYERS")


def module_of(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests_and_comments(text: str) -> str:
    """Blank out comments, string literals and `#[cfg(test)]` items, keeping line numbers."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"' and not (i > 0 and text[i - 1] == "'"):
            # raw strings r"..." / r#"..."# are handled by looking back for r and #s
            hashes = 0
            k = i - 1
            while k >= 0 and text[k] == "#":
                hashes += 1
                k -= 1
            raw = k >= 0 and text[k] == "r" and (k == 0 or not (text[k - 1].isalnum() or text[k - 1] == "_") or text[k - 1] == "b")
            if raw:
                end = '"' + "#" * hashes
                j = text.find(end, i + 1)
                j = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j = min(n, j + 1)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    # Remove #[cfg(test)] items: `mod x;` or a braced block.
    result = list(code)
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        j = m.end()
        brace = code.find("{", j)
        semi = code.find(";", j)
        if semi >= 0 and (brace < 0 or semi < brace):
            end = semi + 1
        else:
            depth, k = 0, brace
            while k < len(code):
                if code[k] == "{":
                    depth += 1
                elif code[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            end = k + 1
        for k in range(m.start(), min(end, len(result))):
            if result[k] != "\n":
                result[k] = " "
    return "".join(result)


def expand_groups(code: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, root, segments) for every path, with `use a::{b, c::d}` groups expanded."""
    paths = []
    for m in PATH_RE.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        segs = tuple(s for s in m.group(2).split("::") if s)
        paths.append((line, m.group(1), segs))
    for m in GROUP_RE.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        prefix = tuple(s for s in m.group(2).split("::") if s)
        depth, k = 0, m.end() - 1
        start = k + 1
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        inner = code[start:k]
        # only the first level of names; nested groups are matched by PATH_RE on their own
        level, token = 0, ""
        for ch in inner + ",":
            if ch == "{":
                level += 1
            elif ch == "}":
                level -= 1
            if ch == "," and level == 0:
                name = token.strip().split("::")[0].split(" as ")[0].strip()
                if name and name != "self":
                    paths.append((line, m.group(1), prefix + (name,)))
                token = ""
            else:
                token += ch
    return paths


def main() -> int:
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f): f for f in files}
    edges: dict[Path, dict[Path, int]] = {f: {} for f in files}
    for f in files:
        me = module_of(f)
        code = strip_tests_and_comments(f.read_text())
        for line, root, segs in expand_groups(code):
            if root == "crate":
                base: tuple[str, ...] = ()
            elif root == "self":
                base = me  # `self::x` names a child of this module
            else:  # super
                base = me[:-1]
            full = base + segs
            target = None
            for k in range(len(full), -1, -1):
                if full[:k] in modules:
                    target = modules[full[:k]]
                    break
            if target is None or target == f:
                continue
            edges[f].setdefault(target, line)
    if "--graph" in sys.argv:
        for f in files:
            for t, line in sorted(edges[f].items()):
                print(f"{f.relative_to(SRC)}:{line} -> {t.relative_to(SRC)}")
        return 0
    # Tarjan's SCC
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    sccs: list[list[Path]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for f in files:
        if f not in index:
            visit(f)
    upward = [
        (f, t, line)
        for f in files
        for t, line in sorted(edges[f].items())
        if layer_of(t) < layer_of(f)
    ]
    for f, t, line in upward:
        print(
            f"upward import: src/{f.relative_to(SRC)}:{line} ({LAYERS[layer_of(f)][0]}) -> "
            f"src/{t.relative_to(SRC)} ({LAYERS[layer_of(t)][0]})"
        )
    if not sccs and not upward:
        print(f"check_layers: {len(files)} files in {len(LAYERS)} layers, no import circle, none upward")
        return 0
    for comp in sccs:
        members = set(comp)
        print(f"import circle of {len(comp)} files:")
        for f in sorted(comp):
            for t, line in sorted(edges[f].items()):
                if t in members:
                    print(f"  src/{f.relative_to(SRC)}:{line} -> src/{t.relative_to(SRC)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
