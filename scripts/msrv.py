#!/usr/bin/env python3
"""Check that the workspace's `rust-version` is true for the lockfile: no normal or build
dependency of a workspace crate declares a newer one. (Language features and std APIs newer
than the MSRV are clippy's `incompatible_msrv`; only one toolchain exists on these machines.)

Usage: scripts/msrv.py  (exit 1 and the offending crates when the MSRV is too low)
"""
import json
import subprocess
import sys


def version(s):
    return tuple(int(x) for x in s.split(".")) + (0,) * (3 - len(s.split(".")))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True, capture_output=True, text=True,
    ).stdout
)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
members = set(meta["workspace_members"])
declared = {packages[m]["rust_version"] for m in members}
if len(declared) != 1 or None in declared:
    sys.exit(f"every workspace crate must inherit one rust-version, found {sorted(map(str, declared))}")
msrv = declared.pop()

too_new = {}
for member in sorted(members, key=lambda m: packages[m]["name"]):
    seen, stack = set(), [member]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            # Dev-dependencies do not count: they build only the tests.
            if all(k["kind"] == "dev" for k in dep["dep_kinds"]):
                continue
            stack.append(dep["pkg"])
    for pid in seen - members:
        rv = packages[pid].get("rust_version")
        if rv and version(rv) > version(msrv):
            p = packages[pid]
            too_new.setdefault(f'{p["name"]} {p["version"]} (rust-version {rv})', set()).add(
                packages[member]["name"]
            )

if too_new:
    print(f"rust-version {msrv} is below what these dependencies need:")
    for dep, users in sorted(too_new.items()):
        print(f"  {dep}, used by {', '.join(sorted(users))}")
    sys.exit(1)
print(f"rust-version {msrv}: no dependency of the {len(members)} workspace crates needs a newer Rust")
