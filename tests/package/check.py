"""The package check (`make package-check`, part of `make test`): build the sdist and the wheel, install the wheel
into a fresh virtual environment with each extra in turn, and run one guarded call through each
(`guarded_call.py`), so a missing package-data file or an undeclared dependency fails the build.

Each environment is new (`python -m venv`) and gets the wheel with exactly one extra: pip resolves and installs
only what that extra declares, so an undeclared dependency is missing there. To keep this to minutes on a busy
machine, two honest shortcuts: the dependency wheels of every extra are downloaded once into a wheelhouse
(`~/.cache/guard-package-check/<hash of pyproject.toml>`, made again when pyproject.toml changes) and each
environment installs from it alone (`--no-index --find-links`), and without compiling bytecode (`--no-compile`:
Python compiles on first import). Nothing from the checkout is importable there: the call runs from a scratch
directory. The times of each step are printed.

`python -m tests.package.check [EXTRA ...]` (default: every extra).
"""
# pyright: basic

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("guarded_call.py")
EXTRAS = ["core", "server", "langchain", "mcp", "openai-agents", "pydantic-ai", "otel"]
CACHE = Path(os.environ.get("GUARD_PACKAGE_CACHE") or Path.home() / ".cache" / "guard-package-check")


def run(cmd: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"package check failed: {' '.join(cmd)} exited {done.returncode}")
    if done.stdout.strip():
        print("   ", done.stdout.strip().splitlines()[-1])


def wheelhouse(wheel: Path) -> Path:
    """The dependency wheels of every extra, downloaded once per version of pyproject.toml."""
    house = CACHE / hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    if (house / ".complete").exists():
        return house
    t0 = time.monotonic()
    shutil.rmtree(house, ignore_errors=True)
    every = ",".join(e for e in EXTRAS if e != "core")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--dest",
            str(house),
            f"{wheel}[{every}]",
        ]
    )
    for ours in house.glob("guard_middleware-*"):
        ours.unlink()
    (house / ".complete").touch()
    print(f"wheelhouse {house} filled in {time.monotonic() - t0:.1f}s")
    return house


def main(extras: list[str]) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="guard-package-") as tmp:
        work = Path(tmp)
        dist = work / "dist"
        t0 = time.monotonic()
        # sdist first, then the wheel built from the sdist: a file missing from the sdist fails here.
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
        [wheel] = dist.glob("*.whl")
        [sdist] = dist.glob("*.tar.gz")
        print(f"built {sdist.name} and {wheel.name} in {time.monotonic() - t0:.1f}s")
        shutil.copy(SCRIPT, work / SCRIPT.name)
        house = wheelhouse(wheel)
        for extra in extras:
            t0 = time.monotonic()
            venv = work / f"venv-{extra}"
            run([sys.executable, "-m", "venv", str(venv)])
            py = str(venv / "bin" / "python")
            spec = str(wheel) if extra == "core" else f"{wheel}[{extra}]"
            run(
                [
                    py,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--no-index",
                    "--find-links",
                    str(house),
                    "--no-compile",
                    spec,
                ]
            )
            installed = time.monotonic() - t0
            run([py, str(work / SCRIPT.name), extra], cwd=work)
            print(f"{extra}: installed in {installed:.1f}s, guarded call in {time.monotonic() - t0 - installed:.1f}s")
            shutil.rmtree(venv)
    print(f"package check passed for {', '.join(extras)} in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:] or EXTRAS)
