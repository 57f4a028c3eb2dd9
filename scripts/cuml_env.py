"""Make (or reuse) the environment an extra such as ``cuml-cu12`` resolves to; print its python.

The environment holds the project's dependencies, the extra (cuML in its pinned range, with
whatever pandas, pyarrow and numpy cuML itself pins), the test tools (torch among them, for
the tiny models the tests build) and the embedded default model's package (installed without
its dependencies, as `make install` does), but not the project:
the tests import the checkout they run from. It lives outside the checkout, in
``$VOCABMAP_CACHE`` (default ``~/.cache/vocabmap``), keyed by the dependency lists, so every
checkout on this machine reuses it until pyproject.toml changes what it needs; a new one is
built in a temporary folder and renamed into place when complete.

Usage: python scripts/cuml_env.py [EXTRA] — progress goes to stderr, the python path to stdout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def requirements(extra: str) -> tuple[list[str], list[str]]:
    """What the environment installs: with dependencies, and without (the embedded default
    model's package, whose own requirement would pull torch's default build)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    if extra not in extras:
        sys.exit(f"cuml_env: no extra {extra!r} in pyproject.toml; choose one of: "
                 + ", ".join(extras))
    no_deps = [pyproject["tool"]["vocabmap"]["embedded-model"]]
    return [*project["dependencies"], *extras[extra], *extras.get("test", [])], no_deps


def main() -> int:
    extra = sys.argv[1] if len(sys.argv) > 1 else "cuml-cu12"
    torch = os.environ.get("TORCH_SPEC", "torch")
    reqs, no_deps = requirements(extra)
    reqs = [torch, *reqs]
    key = hashlib.sha256("\n".join([sys.version, *reqs, "--no-deps", *no_deps]).encode()
                         ).hexdigest()[:12]
    cache = Path(os.environ.get("VOCABMAP_CACHE", Path.home() / ".cache" / "vocabmap"))
    env = cache / f"{extra}-{key}"
    python = env / "bin" / "python"
    if python.is_file():
        print(f"cuml_env: reusing {env}", file=sys.stderr)
        print(python)
        return 0
    start = time.perf_counter()
    building = cache / f".{env.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    print(f"cuml_env: installing {extra} into {env} (several GB, a few minutes)",
          file=sys.stderr)
    venv.create(building, with_pip=True)
    pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *reqs], check=True, stdout=sys.stderr)
    subprocess.run([*pip, "--no-deps", *no_deps], check=True, stdout=sys.stderr)
    for old in cache.glob(f"{extra}-*"):  # environments for earlier dependency lists
        shutil.rmtree(old, ignore_errors=True)
    try:  # bin/ scripts keep the temporary path: run tools as `python -m tool`
        building.rename(env)
    except OSError:  # another run finished the same environment first
        shutil.rmtree(building, ignore_errors=True)
    took = time.perf_counter() - start
    print(f"cuml_env: {extra} environment ready in {took:.0f} s", file=sys.stderr)
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
