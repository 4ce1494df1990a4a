#!/usr/bin/env python3
"""Checks the shape of every crate under crates/: no import cycle between the top-level modules
of a crate, and no source file over MAX_LINES lines outside its test modules.

Why: a cycle between top-level modules means the folders no longer show which part depends on
which (issue 14: the control plane may call the engine, never the reverse), and a file past a
few hundred lines has stopped being one idea. Both creep in one harmless-looking import or
function at a time, so CI refuses them (scripts/test.sh runs this before building).

How it reads code: as text, without a Rust parser. Comments, string and char literals and
`#[cfg(test)]` items are blanked first; then every `crate::NAME`, `use crate::{NAME, ..}` and
`super::..::NAME` that climbs to the crate root is an edge from the file's top-level module to
NAME (when NAME is one). A top-level module is a `src/NAME.rs` or `src/NAME/` other than
`main.rs`/`lib.rs`. Cycles are the strongly connected components of that graph.

Exceptions are the two lists below, each entry with its reason. An entry that no longer
matches anything fails the check too, so the lists only shrink.

Usage: scripts/check-structure.py [ROOT]   (exit 0: clean, 1: violations, 2: usage error)
"""
import os
import re
import sys

MAX_LINES = 800

# Files allowed past MAX_LINES: path relative to the root -> why.
LONG_FILES = {
    # Protocol tables and codecs whose types issue 14 unifies (one codec type, one input
    # format); splitting them before that lands would be undone by it.
    "crates/howl-proto/src/input.rs": "input event wire format; issue 14 makes it the one input type for the worker too",
    "crates/howl-media/src/protocol.rs": "worker protocol messages; issue 14 unifies its codec and input types with howl-proto's",
    "crates/howl-media/src/xinput.rs": "X keysym and button tables for XTest; issue 14 replaces its input type with howl-proto's",
    "crates/howl-proto/src/rtsp/moonlight.rs": "the Moonlight RTSP handshake and its SDP attribute table, one state machine",
    "crates/howl-proto/src/rtsp/message.rs": "RTSP request/response parser and serializer with its header and status tables",
    "crates/howl-proto/src/nvhttp/messages.rs": "NVHTTP XML messages: one encode/decode pair per message, a table of small types",
}

# Import cycles allowed between top-level modules: (crate, frozenset of modules) -> why.
# The component must match exactly: a cycle that grows to another module fails.
CYCLES = {}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def blank_comments_and_strings(src):
    """Replaces comments and string/char literals by spaces, keeping newlines (line numbers)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and not re.match(r"\w", src[i - 1:i] or " "):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", src[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a without a closing quote).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:i + 12])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def blank_test_items(code):
    """Blanks every item under `#[cfg(test)]` (a `mod tests { .. }`, a `use`, a `fn`)."""
    out = list(code)
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        i = m.end()
        # The item ends at its first top-level `;` or at the `}` closing its first `{`.
        depth, j = 0, i
        while j < len(code):
            ch = code[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif ch == ";" and depth == 0:
                j += 1
                break
            j += 1
        for k in range(m.start(), j):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


def read_code(path):
    """The file's code with comments, literals and test items blanked, and how many of its
    lines lie outside test items (comments and blank lines count: they are read too)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        src = f.read()
    code = blank_comments_and_strings(src)
    without_tests = blank_test_items(code)
    test_lines = sum(1 for a, b in zip(code.splitlines(), without_tests.splitlines())
                     if a.strip() and not b.strip())
    return without_tests, len(src.splitlines()) - test_lines


def top_level_modules(src_dir):
    mods = {}
    for e in sorted(os.listdir(src_dir)):
        p = os.path.join(src_dir, e)
        if e.endswith(".rs") and e not in ("main.rs", "lib.rs"):
            mods.setdefault(e[:-3], []).append(p)
        elif os.path.isdir(p) and e != "bin":
            mods.setdefault(e, []).append(p)
    return mods


def rust_files(paths):
    for p in paths:
        if p.endswith(".rs"):
            yield p
        else:
            for d, _, fs in sorted(os.walk(p)):
                for f in sorted(fs):
                    if f.endswith(".rs"):
                        yield os.path.join(d, f)


def depth_below_root(src_dir, path):
    """How many `super::` reach the crate root from this file's module."""
    rel = os.path.relpath(path, src_dir).split(os.sep)
    parts = rel[:-1] + ([] if rel[-1] == "mod.rs" else [rel[-1][:-3]])
    return len(parts)


def references(code, depth):
    """(line, module name) of every path in `code` that starts at the crate root."""
    refs = []

    def line_of(pos):
        return code.count("\n", 0, pos) + 1

    for m in re.finditer(r"\bcrate\s*::\s*(" + IDENT + r")", code):
        refs.append((line_of(m.start()), m.group(1)))
    # `use crate::{a, b::c, d::{e}}`: the first name of each entry of the outer brace.
    for m in re.finditer(r"\bcrate\s*::\s*\{", code):
        level, j, entry = 1, m.end(), m.end()
        while j < len(code) and level:
            ch = code[j]
            if ch == "{":
                level += 1
            elif ch == "}":
                level -= 1
            if level == 0 or (ch == "," and level == 1):
                name = re.match(r"\s*(" + IDENT + r")", code[entry:j])
                if name:
                    refs.append((line_of(entry), name.group(1)))
                entry = j + 1
            j += 1
    if depth >= 1:
        sup = r"\bsuper\s*::\s*" * depth
        for m in re.finditer(r"(?<![\w:])" + sup + r"(" + IDENT + r")", code):
            refs.append((line_of(m.start()), m.group(1)))
        for m in re.finditer(r"(?<![\w:])" + sup + r"\{([^}]*)\}", code):
            for name in re.findall(r"(?:^|,)\s*(" + IDENT + r")", m.group(1)):
                refs.append((line_of(m.start()), name))
    return refs


def strongly_connected(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                out.append(frozenset(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def check(root):
    problems, used_long, used_cycles = [], set(), set()
    crates_dir = os.path.join(root, "crates")
    for crate in sorted(os.listdir(crates_dir)):
        src = os.path.join(crates_dir, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = top_level_modules(src)
        edges = {m: {} for m in mods}  # module -> {target: "file:line"}
        for mod, paths in mods.items():
            for f in rust_files(paths):
                code, code_lines = read_code(f)
                rel = os.path.relpath(f, root)
                for line, name in references(code, depth_below_root(src, f)):
                    if name in mods and name != mod:
                        edges[mod].setdefault(name, f"{rel}:{line}")
                if code_lines > MAX_LINES:
                    if rel in LONG_FILES:
                        used_long.add(rel)
                    else:
                        problems.append(
                            f"{rel}: {code_lines} lines outside tests "
                            f"(limit {MAX_LINES}); split it along its seams")
        # Files at the crate root (main.rs, lib.rs) count for size too.
        for f in ("main.rs", "lib.rs"):
            p = os.path.join(src, f)
            if os.path.exists(p):
                _, code_lines = read_code(p)
                rel = os.path.relpath(p, root)
                if code_lines > MAX_LINES and rel not in LONG_FILES:
                    problems.append(f"{rel}: {code_lines} lines (limit {MAX_LINES})")
                elif code_lines > MAX_LINES:
                    used_long.add(rel)
        for comp in strongly_connected(mods, {m: set(t) for m, t in edges.items()}):
            key = (crate, comp)
            if key in CYCLES:
                used_cycles.add(key)
                continue
            detail = "; ".join(
                f"{a} -> {b} ({edges[a][b]})"
                for a in sorted(comp) for b in sorted(edges[a]) if b in comp)
            problems.append(
                f"{crate}: top-level modules import each other in a loop: "
                f"{', '.join(sorted(comp))}\n    edges: {detail}")
    for rel, why in sorted(LONG_FILES.items()):
        if rel not in used_long:
            problems.append(
                f"stale allow-list entry: {rel} is gone or within {MAX_LINES} lines "
                f"(was: {why}); remove it from LONG_FILES")
    for (crate, comp), why in sorted(CYCLES.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
        if (crate, comp) not in used_cycles:
            problems.append(
                f"stale allow-list entry: {crate} has no cycle exactly {{{', '.join(sorted(comp))}}} "
                f"(was: {why}); remove it from CYCLES")
    return problems


def main():
    if len(sys.argv) > 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = sys.argv[1] if len(sys.argv) == 2 else os.path.join(os.path.dirname(__file__), "..")
    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, "crates")):
        print(f"{root} has no crates/ directory", file=sys.stderr)
        return 2
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"structure check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("structure check: no import cycles between top-level modules, no file over "
          f"{MAX_LINES} lines (allowed: {len(LONG_FILES)} files, {len(CYCLES)} cycles, each with a reason)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
