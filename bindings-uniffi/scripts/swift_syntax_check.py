"""Syntax-check Swift sources with tree-sitter-swift (no Swift compiler exists on this machine).

Usage: swift_syntax_check.py FILE.swift...   Exit 1 if any file has ERROR or MISSING nodes.

tree-sitter-swift 0.7.4 misparses `@_documentation(visibility: private)` (an underscored
attribute UniFFI's generated Swift uses); those lines are blanked, keeping line numbers, before
parsing. Nothing else is altered.
"""
import re
import sys

import tree_sitter_swift
from tree_sitter import Language, Parser

QUIRK = re.compile(r"^\s*@_documentation\(visibility:\s*private\)\s*$")


def problems(source: bytes):
    parser = Parser(Language(tree_sitter_swift.language()))
    tree = parser.parse(source)
    out = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            kind = "MISSING " + node.type if node.is_missing else "ERROR"
            out.append((row + 1, col + 1, kind))
            continue  # one report per broken subtree
        if node.has_error:
            stack.extend(node.children)
    return sorted(out)


def main(paths):
    bad = 0
    for path in paths:
        lines = open(path, encoding="utf-8").read().split("\n")
        blanked = sum(1 for l in lines if QUIRK.match(l))
        text = "\n".join("" if QUIRK.match(l) else l for l in lines)
        found = problems(text.encode("utf-8"))
        status = "ok" if not found else f"{len(found)} problem(s)"
        print(f"swift syntax: {path}: {len(lines)} lines, {blanked} @_documentation lines blanked: {status}")
        for row, col, kind in found[:20]:
            print(f"  {path}:{row}:{col}: {kind}: {lines[row - 1].strip()[:120]}")
        bad += bool(found)
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: swift_syntax_check.py FILE.swift...")
    sys.exit(main(sys.argv[1:]))
