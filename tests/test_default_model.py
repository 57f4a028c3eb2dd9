"""The embedded default (all-MiniLM-L6-v2, 30,522 × 384) end to end, as `make run` does it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_embedded_default_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "job", "run", str(ROOT / "configs/default.toml"),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200,
                          cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    table = pd.read_parquet(folder / "layout.parquet")
    assert len(table) == 30522
    assert table["token_id"].is_monotonic_increasing
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["model"]["vocab_size"], manifest["model"]["dims"]) == (30522, 384)
    assert manifest["quality"]["knn_preservation"] > 0.25
    zooms = {z["name"]: z for z in manifest["rendered"]["zooms"]}
    assert len(zooms) >= 6  # three anchored in configs/default.toml, three automatic
    assert "1991" in zooms["years"]["examples"]  # years sit together on the map
    assert (folder / "overview.png").stat().st_size > 10_000
