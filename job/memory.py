"""Does the job fit its memory? What it may use, what it will need at its peak, and the
decision, made before the first costly stage so that a job that cannot fit stops with one
line instead of being killed by the kernel minutes later.

**What the job may use** (:func:`host_limit`): the tightest of

- the memory cgroup of this process and its ancestors: cgroup v1 ``memory.limit_in_bytes``,
  v2 ``memory.max`` (the path from ``/proc/self/cgroup``; ``max`` or a value of 2⁶⁰ bytes or
  more means none). The job is counted as alone in its cgroup;
- Slurm's allocation: ``SLURM_MEM_PER_NODE``, else ``SLURM_MEM_PER_CPU`` × the CPUs
  (``SLURM_CPUS_ON_NODE``, else this process's CPU affinity); Slurm's "MB" are MiB;
- the machine: ``MemAvailable`` plus what this process already holds (``VmRSS``).

On the GPU path the device's free memory (cupy ``memGetInfo``, plus what cupy's pool holds)
is the second limit (:func:`device_limit`).

**The estimate** (:func:`stage_peaks`) is the largest of per-stage peaks, each a constant
(:data:`BASE_MIB`: the interpreter, the libraries imported by then, the tokenizer) plus the
arrays the stage holds, counted from the code (:func:`stage_arrays`), times 1.05:

- ``load``: the float32 matrix of the tokenizer's rows (V × d × 4 bytes) and one block of
  8,192 rows being converted (up to 10 bytes a value for bf16);
- every later stage up to ``neighbours`` holds that matrix, a copy of the selected rows
  when the selection is a subset (N × d × 4), and the token table (V × 3 KiB, fitted);
- ``knn``: the running neighbour lists and the graph (N × k × 12 bytes, twice while they
  are merged); on the int8 route the int8 rows (N × d bytes) and three float32
  temporaries of a 4,096-row block while they are made;
- ``layout`` (openTSNE): sklearn's PCA initialisation centres a copy of the rows
  (N × d × 4; above 1,000 dims) unless told to centre them in place (the lower-memory
  choice, :data:`IN_PLACE`), and openTSNE's affinities (N × k × 48 bytes: the graph, P
  and its symmetrised sum);
- ``quality``, ``neighbours``: the graph (N × k × 12); ``render``: 6 KiB a token (fitted).

The constants are the larger of what two runs held beyond those terms: the embedded default
(30,522 × 384, where the arrays are tens of MiB) and a 65,536 × 2,048 bf16 model built by
bench/scaling.py's code (their residuals differed by 2 to 71 MiB per stage); the 131,072 ×
5,120 benchmark was left out of the fit and is the check (docs/speed.md, "The memory check", has
the figures). The GPU path's device estimate is the rows three times (the matrix, the kNN
tiles and lists, as the device peaks measured in docs/benchmarks.md show, and cuML's
column-major copy for its PCA initialisation) plus the affinities; it was not measured
with this check.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from job.errors import VocabmapError
from job.reduce import usable_cores

log = logging.getLogger(__name__)

MIB = 2**20
NO_LIMIT = 2**60  # cgroup v1 writes 2^63 rounded to pages for "no limit"
# Per-stage constants in MiB (module docstring): manifest peak_rss_mib_per_stage less the
# counted terms, the larger of two runs, 2-core AMD EPYC, 2026-12-06.
BASE_MIB = {"load": 472.0, "undertrained": 577.0, "knn": 798.0, "layout": 667.0,
            "quality": 998.0, "neighbours": 806.0, "render": 1136.0}
MARGIN = 1.05  # on every stage's estimate
GRAPH_BYTES_PER_ENTRY = 12  # int64 index + float32 distance
AFFINITY_BYTES_PER_ENTRY = 48  # openTSNE: the graph, P (CSR) and P + Pᵀ
READ_BLOCK_ROWS, READ_BYTES_PER_VALUE = 8192, 10  # job/weights.py: bf16 bits, uint32, float32
INT8_BLOCK_ROWS = 4096  # job/knn.py's Int8Rows: three float32 temporaries of a block
RENDER_BYTES_PER_ROW = 6144  # the pictures' per-token frames (fitted: see BASE_MIB)
TABLE_BYTES_PER_ROW = 3072  # the token table and its checks, from the tokens stage on (fitted)
DEVICE_BASE_MIB = 600.0  # CUDA context, cuML's and torch's workspaces
IN_PLACE = "pca_in_place"  # the lower-memory choice: openTSNE's PCA init without a copy
CHECK_ENV = "VOCABMAP_MEMORY_CHECK"  # "warn": a job that would not fit logs it and goes on


class MemoryLimitError(VocabmapError, RuntimeError):
    """The job will not fit the memory it may use; the message gives the ways out."""


@dataclass(frozen=True)
class Limit:
    """Memory the job may use, in MiB, and where that figure comes from."""

    mib: float
    source: str


def _limit_file(path: Path) -> int | None:
    """A cgroup limit file's value in bytes; None for no limit or no readable file."""
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    if not raw.isdigit() or int(raw) >= NO_LIMIT:
        return None
    return int(raw)


def cgroup_limit(proc_cgroup: Path = Path("/proc/self/cgroup"),
                 root: Path = Path("/sys/fs/cgroup")) -> Limit | None:
    """The tightest memory limit of this process's cgroup and its ancestors (v1 and v2)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    v2_root = root if (root / "cgroup.controllers").is_file() else root / "unified"
    found: list[Limit] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, name, kind = root / "memory", "memory.limit_in_bytes", "cgroup v1"
        elif controllers == "":
            base, name, kind = v2_root, "memory.max", "cgroup v2"
        else:
            continue
        folder = Path(path)
        for part in [folder, *folder.parents]:
            file = base / str(part).lstrip("/") / name
            if (value := _limit_file(file)) is not None:
                found.append(Limit(value / MIB, f"{kind} {file}"))
    return min(found, key=lambda limit: limit.mib, default=None)


def slurm_limit(env: dict[str, str] | None = None) -> Limit | None:
    """Slurm's memory allocation from the job's environment (MiB), or None."""
    env = os.environ if env is None else env
    per_node = env.get("SLURM_MEM_PER_NODE", "").strip()
    if per_node.isdigit() and int(per_node) > 0:
        return Limit(float(per_node), f"Slurm SLURM_MEM_PER_NODE={per_node}")
    per_cpu = env.get("SLURM_MEM_PER_CPU", "").strip()
    if not (per_cpu.isdigit() and int(per_cpu) > 0):
        return None
    cpus_raw = env.get("SLURM_CPUS_ON_NODE", "").strip()
    cpus = int(cpus_raw) if cpus_raw.isdigit() else usable_cores()
    return Limit(float(per_cpu) * cpus, f"Slurm SLURM_MEM_PER_CPU={per_cpu} x {cpus} CPUs")


def _kib(text: str, key: str) -> int | None:
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(found[1]) if found else None


def machine_limit(meminfo: Path = Path("/proc/meminfo"),
                  status: Path = Path("/proc/self/status")) -> Limit | None:
    """MemAvailable plus what this process already holds, or None off Linux."""
    try:
        available = _kib(meminfo.read_text(), "MemAvailable")
        held = _kib(status.read_text(), "VmRSS") or 0
    except OSError:
        return None
    if available is None:
        return None
    return Limit((available + held) / 1024, f"MemAvailable {available / 1024:.0f} MiB + "
                 f"{held / 1024:.0f} MiB this process holds")


def host_limit() -> Limit | None:
    """The tightest of the cgroup, Slurm and machine limits; None when none is known."""
    found = [limit for limit in (cgroup_limit(), slurm_limit(), machine_limit()) if limit]
    return min(found, key=lambda limit: limit.mib, default=None)


def device_limit() -> Limit | None:
    """Free device memory plus what cupy's pool already holds (MiB), or None without cupy."""
    try:
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        pooled = cupy.get_default_memory_pool().total_bytes()
    except Exception:  # no cupy, no device
        return None
    return Limit((free + pooled) / MIB, f"GPU free memory ({free / MIB:.0f} of "
                 f"{total / MIB:.0f} MiB)")


@dataclass(frozen=True)
class Job:
    """What decides the memory a layout needs, known before the first costly stage."""

    vocab: int  # rows of the float32 matrix read (the tokenizer's ids)
    rows: int  # rows laid out (the token selection)
    dims: int
    neighbours: int  # k of the kNN graph (3 × perplexity)
    route: str  # the kNN route: "exact", "int8", or "" (sklearn searches its own)
    backend: str  # "opentsne", "cuml" or "sklearn"
    copy: bool  # the selected rows are a copy of the matrix's (a subset is selected)
    matrices: int = 1  # vocabulary matrices held: 2 on a contextual run (input and means)
    scored: int = 1  # matrices read and scored: 2 for an untied model (input and output)


def pca_copies(job: Job) -> bool:
    """openTSNE's PCA initialisation (sklearn's ``svd_solver="auto"``) centres a copy of the
    rows: its randomized and full solvers do; its covariance solver, which sklearn picks for
    at most 1,000 dims and at least ten rows per dim, does not."""
    return job.backend == "opentsne" and not (job.dims <= 1000 and job.rows >= 10 * job.dims)


def stage_arrays(job: Job, in_place: bool = False) -> dict[str, float]:
    """The arrays (MiB) each stage of ``job`` holds at its peak on the host, counted from the
    code (module docstring); ``in_place``: the PCA initialisation centres the rows in place
    instead of on a copy."""
    matrix = job.vocab * job.dims * 4 / MIB
    rows = job.rows * job.dims * 4 / MIB
    held = job.matrices * matrix + (rows if job.copy else 0.0)
    graph = job.rows * job.neighbours * GRAPH_BYTES_PER_ENTRY / MIB
    read = READ_BLOCK_ROWS * job.dims * READ_BYTES_PER_VALUE / MIB
    if job.backend == "cuml":  # the rows, the search and the layout live on the device
        return {"load": job.scored * matrix + read, "undertrained": job.scored * matrix,
                "knn": held, "layout": held,
                "quality": held, "neighbours": held + graph,
                "render": job.rows * RENDER_BYTES_PER_ROW / MIB}
    int8 = (job.rows * job.dims + INT8_BLOCK_ROWS * job.dims * 12) / MIB \
        if job.route == "int8" else 0.0
    pca = rows if pca_copies(job) and not in_place else 0.0
    return {"load": job.scored * matrix + read, "undertrained": job.scored * matrix,
            "knn": held + 2 * graph + int8,
            "layout": held + pca + job.rows * job.neighbours * AFFINITY_BYTES_PER_ENTRY / MIB,
            "quality": held + graph, "neighbours": held + graph,
            "render": job.rows * RENDER_BYTES_PER_ROW / MIB}


def stage_peaks(job: Job, in_place: bool = False) -> dict[str, float]:
    """Estimated peak resident memory (MiB) of each stage of ``job`` on the host: its
    constant (:data:`BASE_MIB`) plus its arrays (:func:`stage_arrays`), plus the margin."""
    arrays = stage_arrays(job, in_place)
    table = job.vocab * TABLE_BYTES_PER_ROW / MIB
    return {stage: (BASE_MIB[stage] + arrays[stage]
                    + (table if stage not in ("load", "render") else 0.0)) * MARGIN
            for stage in BASE_MIB}


def device_estimate(job: Job) -> float:
    """Estimated peak device memory (MiB) of the GPU path: the rows, the kNN tiles and
    lists (about as much again: docs/benchmarks.md, "GPU"), cuML's column-major copy
    of the rows for its PCA initialisation, and its affinities."""
    rows = job.rows * job.dims * 4 / MIB
    affinities = job.rows * job.neighbours * AFFINITY_BYTES_PER_ENTRY / MIB
    return DEVICE_BASE_MIB + 3 * rows + affinities


@dataclass
class Plan:
    """The decision: the estimate, the limit it was compared with, the choice made."""

    estimate_mib: float
    limit: Limit | None
    choice: str = ""  # "" or IN_PLACE
    peaks: dict[str, float] = field(default_factory=dict)
    device: dict[str, Any] | None = None

    @property
    def in_place(self) -> bool:
        return self.choice == IN_PLACE

    def describe(self) -> str:
        """The log line: estimate, limit, decision."""
        limit = (f"{_gib(self.limit.mib)} ({self.limit.source})" if self.limit
                 else "none found")
        device = (f"; GPU: estimate {_gib(self.device['estimate_mib'])}, limit "
                  f"{self.device['limit_from']}" if self.device else "")
        how = ("fits only with openTSNE's PCA initialisation centring the rows in place "
               "(the same start, no copy of the matrix): doing that" if self.in_place
               else "fits")
        stage = max(self.peaks, key=self.peaks.get)
        return (f"memory: estimated peak {_gib(self.estimate_mib)} ({stage} stage), limit "
                f"{limit}{device}; {how}")

    def record(self) -> dict[str, Any]:
        """The manifest's ``memory`` entry (the run adds its measured peak)."""
        out: dict[str, Any] = {
            "estimate_mib": round(self.estimate_mib),
            "estimate_stage": max(self.peaks, key=self.peaks.get) if self.peaks else "",
            "estimate_per_stage_mib": {k: round(v) for k, v in self.peaks.items()},
            "limit_mib": round(self.limit.mib) if self.limit else None,
            "limit_from": self.limit.source if self.limit else "no limit found",
            "choice": self.choice or "none needed"}
        return out | ({"device": self.device} if self.device else {})


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def _fewer_tokens(job: Job, limit: float) -> str:
    """The ``[tokens]`` way out: the most rows that would fit, or "" when none would (the
    whole vocabulary's matrix is read whatever the selection)."""
    def fits(n: int) -> bool:
        smaller = Job(job.vocab, n, job.dims, job.neighbours, job.route, job.backend, True)
        return max(stage_peaks(smaller, in_place=pca_copies(smaller)).values()) <= limit

    if not fits(job.neighbours + 1):
        return ""
    low, high = job.neighbours + 1, job.rows
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return f"map fewer tokens ([tokens] select = \"first\" with n = {low:,} fits, or " \
           "keep some categories or scripts)"


def _too_large(job: Job, need: float, limit: Limit, device: bool, floor: float = 0.0,
               ) -> MemoryLimitError:
    """The one-line error: the estimate, the limit and its source, the ways out; ``floor``:
    what any token selection would need (the matrix is read whole)."""
    shape = f"{job.rows:,} of {job.vocab:,} tokens x {job.dims:,} dims" + (
        f"; at least {_gib(floor)} whatever the token selection" if floor else "")
    if device:
        ways = ["use a GPU with more memory", "set layout.backend = \"opentsne\" to lay out "
                "on the CPU"]
        what = "GPU memory"
    else:
        ways = [f"ask for more memory (sbatch --mem={math.ceil(need * 1.1 / 1024)}G)",
                "run on a machine with more memory"]
        what = "memory"
    if hint := _fewer_tokens(job, limit.mib) if not device else "":
        ways.insert(1, hint)
    ways.append(f"or, if the estimate is wrong here, set {CHECK_ENV}=warn to try anyway")
    return MemoryLimitError(f"this job needs about {_gib(need)} of {what} at its peak "
                            f"({shape}) but may use {_gib(limit.mib)} ({limit.source}); "
                            + "; ".join(ways))


def plan(job: Job, limit: Limit | None, device: Limit | None = None) -> Plan:
    """Fits: the plan. Fits only when openTSNE's PCA initialisation centres the rows in
    place: that plan (``choice``). Does not fit: :class:`MemoryLimitError`."""
    peaks = stage_peaks(job)
    result = Plan(max(peaks.values()), limit, peaks=peaks)
    if job.backend == "cuml":
        need = device_estimate(job)
        result.device = {"estimate_mib": round(need),
                         "limit_mib": round(device.mib) if device else None,
                         "limit_from": device.source if device else "no device limit found"}
        if device and need > device.mib:
            _refuse(_too_large(job, need, device, device=True))
    if limit is None or result.estimate_mib <= limit.mib:
        return result
    lower = stage_peaks(job, in_place=True) if pca_copies(job) else None
    if lower is None or max(lower.values()) > limit.mib:
        _refuse(_too_large(job, result.estimate_mib, limit, device=False))  # or warn
    return Plan(max(lower.values()), limit, IN_PLACE, lower, result.device) if lower else result


def _refuse(error: MemoryLimitError) -> None:
    """Raise ``error``; with ``VOCABMAP_MEMORY_CHECK=warn`` log it as a warning instead (the
    job goes on, with the lower-memory choice where there is one)."""
    if os.environ.get(CHECK_ENV, "").strip().lower() != "warn":
        raise error
    log.warning("%s (going on: %s=warn)", error, CHECK_ENV)


def check_read(vocab: int, dims: int, limit: Limit | None, matrices: int = 1) -> None:
    """Before a matrix is read: fail when even the smallest token selection of a
    ``vocab`` × ``dims`` matrix would not fit (the matrix is read whole; ``matrices``: 2 when
    an untied model's second matrix is read for the under-trained score)."""
    smallest = Job(vocab, 0, dims, 0, "exact", "opentsne", True, scored=matrices)
    floor = max(stage_peaks(smallest).values())
    if limit is None or floor <= limit.mib:
        return
    # every token at layout.perplexity 30 (k = 90)
    whole = Job(vocab, vocab, dims, 90, "exact", "opentsne", False, scored=matrices)
    _refuse(_too_large(whole, max(stage_peaks(whole).values()), limit, False, floor))
