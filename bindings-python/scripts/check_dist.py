"""Check the built wheel and sdist as PyPI and pip will see them: an abi3 wheel for CPython
>= 3.10 on a manylinux platform tag, carrying the extension, the stubs and the license; the
metadata users read (Requires-Python, license, URLs, classifiers, httpx only in the `client`
extra); an sdist with the Rust sources it builds from; and pip refusing vlexivo on a
too-old Python, naming Requires-Python, as it would from PyPI.

Usage: python scripts/check_dist.py DIST_DIR   (exit 1 with the reasons on any failure)
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def main(dist: Path) -> None:
    wheels = sorted(dist.glob("vlexivo-*.whl"))
    sdists = sorted(dist.glob("vlexivo-*.tar.gz"))
    check(len(wheels) == 1 and len(sdists) == 1, f"one wheel and one sdist in {dist}: {wheels + sdists}")
    if failures:
        return
    wheel, sdist = wheels[0], sdists[0]
    tag = wheel.name.removesuffix(".whl").split("-", 2)[2]
    check(tag.startswith("cp310-abi3-manylinux_"), f"wheel tag {tag!r} is not cp310-abi3-manylinux_*")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        check(
            any(n.startswith("vlexivo/_native.") and n.endswith(".abi3.so") for n in names),
            "no abi3 extension",
        )
        for want in ["vlexivo/__init__.py", "vlexivo/py.typed", "vlexivo/_native.pyi", "vlexivo/client.py"]:
            check(want in names, f"wheel lacks {want}")
        check(any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "wheel lacks the LICENSE file")
        check(not any("/tests/" in n or n.startswith("tests/") for n in names), "wheel ships the tests")
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
        wheel_info = z.read(meta_name.replace("METADATA", "WHEEL")).decode()
    check("Root-Is-Purelib: false" in wheel_info, "the wheel must not be pure Python")
    check(meta["Requires-Python"] == ">=3.10", f"Requires-Python is {meta['Requires-Python']!r}")
    check(meta["License-Expression"] == "Apache-2.0", f"License-Expression is {meta['License-Expression']!r}")
    urls = meta.get_all("Project-URL") or []
    for label in ["Homepage", "Repository", "Documentation", "Issues"]:
        check(any(u.startswith(f"{label}, ") for u in urls), f"no {label} URL")
    classifiers = meta.get_all("Classifier") or []
    for c in ["Programming Language :: Python :: 3.10", "Typing :: Typed", "Framework :: FastAPI"]:
        check(c in classifiers, f"classifier {c!r} missing")
    requires = meta.get_all("Requires-Dist") or []
    httpx = [r for r in requires if r.startswith("httpx")]
    check(
        len(httpx) == 1 and "extra == 'client'" in httpx[0].replace('"', "'"),
        f"httpx must be the client extra only: {requires}",
    )
    check(
        set(meta.get_all("Provides-Extra") or [])
        >= {"client", "requests", "mcp", "fastapi", "flask", "django"},
        "extras missing",
    )
    check(
        (meta.get_payload() or "").lstrip().startswith("# vlexivo"), "the README is not the long description"
    )

    with tarfile.open(sdist) as t:
        members = t.getnames()
    root = members[0].split("/")[0]
    for want in ["pyproject.toml", "PKG-INFO", "LICENSE", "python/vlexivo/__init__.py"]:
        check(f"{root}/{want}" in members, f"sdist lacks {want}")
    check(any(m.endswith("core/src/lib.rs") for m in members), "sdist lacks the core crate it builds from")
    check(
        any(m.endswith("bindings-python/src/lib.rs") or m == f"{root}/src/lib.rs" for m in members),
        "sdist lacks the binding crate",
    )

    # pip on a Python older than 3.10, as PyPI serves the files: a PEP 503 index page that
    # carries Requires-Python (data-requires-python), read through a file:// URL.
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "simple" / "vlexivo"
        index.mkdir(parents=True)
        links = "".join(
            f'<a href="{f.resolve().as_uri()}" data-requires-python="&gt;=3.10">{f.name}</a>\n'
            for f in (wheel, sdist)
        )
        (index / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        old = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--no-deps",
                "--disable-pip-version-check",
                "--python-version",
                "3.9",
                "--target",
                str(Path(tmp) / "t"),
                "--index-url",
                (Path(tmp) / "simple").as_uri(),
                "vlexivo",
            ],
            capture_output=True,
            text=True,
        )
    errors = [line for line in old.stderr.splitlines() if line.startswith("ERROR")]
    check(old.returncode != 0, "pip accepted vlexivo for Python 3.9")
    check("Traceback" not in old.stderr, f"pip's refusal has a traceback: {old.stderr!r}")
    check(
        any("Requires-Python >=3.10" in e for e in errors),
        f"pip's refusal does not name Requires-Python: {old.stderr!r}",
    )
    print(
        f"check_dist: {wheel.name} ({wheel.stat().st_size / 1e6:.2f} MB), "
        f"{sdist.name} ({sdist.stat().st_size / 1e6:.2f} MB); "
        f"pip on Python 3.9: {' / '.join(errors)}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    if failures:
        print("check_dist FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
