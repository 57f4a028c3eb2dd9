"""Peak memory of reading a model's input embeddings: safetensors path vs the full model.

    .venv/bin/python bench/embedding_memory.py                 # builds a test model, both paths
    .venv/bin/python bench/embedding_memory.py FOLDER METHOD...  # JSON lines on stdout

METHOD is "safetensors" (the real loader, ``job.source.load``) or "automodel" (the fallback,
``AutoModel.from_pretrained``). The reads run in a fresh process: the modules they need are
imported first; before each read, freed memory is handed back (``malloc_trim``) and the peak
RSS reset (``/proc/self/clear_refs``); the figure is the peak RSS during the read minus the
RSS just before it. Weight files mapped into memory count as far as their pages are touched
(the matrix is summed, as the layout would read it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2**20


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024  # type: ignore[union-attr]


def _read(folder: Path, method: str) -> tuple[int, int]:
    """(rows, dims) read by ``method``: "safetensors" (the real loader) or "automodel"."""
    from job import source, weights
    from job.config import ModelConfig

    if method == "safetensors":
        emb = source.load(ModelConfig(id=str(folder)))
        assert emb.method == "safetensors", emb.method
        matrix = emb.matrix
    else:
        tokenizer = source.load_tokenizer(folder)
        matrix, *_ = weights.read_automodel(folder, source.tokenizer_rows(tokenizer))
    float(matrix.sum())  # touch every page, as the layout will
    return matrix.shape  # type: ignore[return-value]


def _preload(folder: Path) -> None:
    """Import what reading ``folder`` imports, so the measured peak is the read itself."""
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import transformers
    from transformers import AutoConfig

    arch = AutoConfig.from_pretrained(folder).architectures or ["BertModel"]
    getattr(transformers, arch[0])
    import job.source  # noqa: F401


def _release() -> None:
    """Give freed memory back to the system, so the next baseline is the memory in use."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: nothing to hand back explicitly
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(folder: Path, method: str) -> dict[str, float]:
    """Peak RSS above the baseline while ``method`` reads the embeddings of ``folder``."""
    _preload(folder)
    _release()
    baseline = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    rows, dims = _read(folder, method)
    peak = _status("VmHWM")
    weights = sum(f.stat().st_size for f in folder.iterdir()
                  if f.suffix in (".safetensors", ".bin"))
    return {"method": method, "peak_above_baseline_mib": round((peak - baseline) / MIB, 1),
            "embedding_mib": round(rows * dims * 4 / MIB, 1),
            "weights_mib": round(weights / MIB, 1), "baseline_mib": round(baseline / MIB, 1)}


def run(folder: Path, *methods: str) -> list[dict[str, float]]:
    """``measure`` each method in turn in one fresh process (imports paid once; memory freed
    and handed back between reads). Put the method that matters first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, __file__, str(folder), *methods], env=env,
                          text=True, capture_output=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"measuring failed: {proc.stderr.strip().splitlines()[-1:]}")
    return [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(methods):]]


def main() -> None:
    if len(sys.argv) >= 3:
        for method in sys.argv[2:]:
            print(json.dumps(measure(Path(sys.argv[1]), method)), flush=True)
        return
    from tests.builders import big_bert, bin_copy

    with tempfile.TemporaryDirectory() as tmp:
        big = big_bert(Path(tmp) / "big")
        pt = bin_copy(big, Path(tmp) / "big-bin")
        half = big_bert(Path(tmp) / "big-bf16", dtype="bfloat16")
        results = [(big, r) for r in run(big, "safetensors", "automodel")]
        results += [(pt, r) for r in run(pt, "automodel")]
        results += [(half, r) for r in run(half, "safetensors", "automodel")]
        for folder, r in results:
            method = r["method"]
            print(f"{method:12s} {folder.name:9s} peak {r['peak_above_baseline_mib']:7.1f} MiB "
                  f"above baseline (embedding matrix {r['embedding_mib']} MiB, weights "
                  f"{r['weights_mib']} MiB)")


if __name__ == "__main__":
    main()
