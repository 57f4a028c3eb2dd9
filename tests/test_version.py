"""`vocabmap --version`: the version, and the git revision when run from a checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import job

ROOT = Path(__file__).resolve().parent.parent


def version(pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    return subprocess.run([sys.executable, "-m", "job", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=pythonpath, env=env)


def test_version_of_a_checkout_names_its_commit() -> None:
    proc = version(ROOT)
    assert proc.returncode == 0, proc.stderr
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:  # a copy without git
        assert proc.stdout == f"vocabmap {job.__version__}\n"
        return
    assert re.fullmatch(rf"vocabmap {re.escape(job.__version__)} \(git "
                        rf"{head.stdout.strip()}(-dirty)?\)\n", proc.stdout), proc.stdout


def test_version_outside_a_checkout_is_the_version_alone(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "job", tmp_path / "job",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proc = version(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"vocabmap {job.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", job.__version__)
