"""The memory check (issue 19, "Any machine's memory"): where the limit comes from (cgroup v1
and v2, Slurm, the machine), the estimate and the decision, and real jobs inside memory
cgroups: one too small (one error line, exit 2, nothing on disk), one just large enough (the
job finishes and its manifest holds the estimate and the measured peak)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from job import memory, rundir
from job.memory import Job, Limit
from tests.test_input_errors import ROOT, config, error_line, files_under, manifest_of

MIB = 2**20
UNLIMITED_V1 = "9223372036854771712"  # what cgroup v1 shows for "no limit"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- where the limit comes from ---------------------------------------------------------------

def test_cgroup_v1_limit_is_the_tightest_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "12:cpu,cpuacct:/slurm/job_7\n4:memory:/slurm/job_7/step_0\n0::/x\n")
    root = tmp_path / "fs"
    _write(root / "memory/slurm/job_7/step_0/memory.limit_in_bytes", UNLIMITED_V1)
    _write(root / "memory/slurm/job_7/memory.limit_in_bytes", str(600 * MIB))
    _write(root / "memory/memory.limit_in_bytes", UNLIMITED_V1)
    limit = memory.cgroup_limit(proc, root)
    assert limit is not None and limit.mib == 600
    assert limit.source == f"cgroup v1 {root}/memory/slurm/job_7/memory.limit_in_bytes"


def test_cgroup_v2_limit_and_max_means_none(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/user.slice/job\n")
    root = tmp_path / "fs"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "user.slice/job/memory.max", "max\n")
    assert memory.cgroup_limit(proc, root) is None
    _write(root / "user.slice/memory.max", str(2048 * MIB))
    limit = memory.cgroup_limit(proc, root)
    assert limit is not None and limit.mib == 2048 and limit.source.startswith("cgroup v2 ")


def test_cgroup_v2_of_a_hybrid_mount_is_read_under_unified(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/job\n")
    _write(tmp_path / "fs/unified/job/memory.max", str(1024 * MIB))
    limit = memory.cgroup_limit(proc, tmp_path / "fs")
    assert limit is not None and limit.mib == 1024


def test_no_cgroup_file_means_no_cgroup_limit(tmp_path: Path) -> None:
    assert memory.cgroup_limit(tmp_path / "missing", tmp_path) is None
    _write(tmp_path / "cgroup", "4:memory:/a\n")
    assert memory.cgroup_limit(tmp_path / "cgroup", tmp_path / "fs") is None


def test_slurm_allocation_per_node_and_per_cpu() -> None:
    assert memory.slurm_limit({"SLURM_MEM_PER_NODE": "4096"}) == Limit(
        4096.0, "Slurm SLURM_MEM_PER_NODE=4096")
    per_cpu = memory.slurm_limit({"SLURM_MEM_PER_CPU": "2000", "SLURM_CPUS_ON_NODE": "4"})
    assert per_cpu == Limit(8000.0, "Slurm SLURM_MEM_PER_CPU=2000 x 4 CPUs")
    assert memory.slurm_limit({}) is None
    assert memory.slurm_limit({"SLURM_MEM_PER_NODE": "0"}) is None  # --mem=0: the whole node


def test_machine_limit_is_available_memory_plus_what_the_process_holds(tmp_path: Path) -> None:
    _write(tmp_path / "meminfo", "MemTotal: 8000000 kB\nMemAvailable:    1048576 kB\n")
    _write(tmp_path / "status", "Name: python\nVmRSS:\t  524288 kB\n")
    limit = memory.machine_limit(tmp_path / "meminfo", tmp_path / "status")
    assert limit is not None and limit.mib == 1536
    assert memory.machine_limit(tmp_path / "missing", tmp_path / "status") is None


# --- the estimate and the decision ------------------------------------------------------------

NEMO = Job(vocab=131072, rows=131072, dims=5120, neighbours=90, route="int8",
           backend="opentsne", copy=False)


def test_the_estimate_grows_with_the_matrix_and_the_int8_route_does_not_lower_it() -> None:
    small = max(memory.stage_peaks(Job(30522, 30522, 384, 90, "exact", "opentsne",
                                       False)).values())
    big = memory.stage_peaks(NEMO)
    assert small < max(big.values())
    assert max(big, key=big.get) == "layout"  # openTSNE's PCA copy of the rows
    exact = memory.stage_peaks(Job(**{**vars(NEMO), "route": "exact"}))
    assert exact["knn"] < big["knn"]  # the int8 copy of the rows adds N x d bytes
    assert max(exact.values()) == max(big.values())


def test_plan_fits_takes_the_lower_memory_choice_or_refuses() -> None:
    need = max(memory.stage_peaks(NEMO).values())
    lower = max(memory.stage_peaks(NEMO, in_place=True).values())
    assert lower < need - 1500  # the PCA copy of a 2.5 GiB matrix; then the kNN stage peaks
    assert memory.plan(NEMO, Limit(need + 1, "test")).choice == ""
    assert memory.plan(NEMO, None).choice == ""
    chosen = memory.plan(NEMO, Limit(lower + 1, "test"))
    assert chosen.in_place and chosen.estimate_mib == lower
    assert chosen.record()["choice"] == memory.IN_PLACE
    with pytest.raises(memory.MemoryLimitError) as err:
        memory.plan(NEMO, Limit(4500, "cgroup v1 /sys/fs/cgroup/memory/job/memory.limit_in_bytes"))
    text = str(err.value)
    assert f"needs about {lower / 1024:.1f} GiB" not in text  # the estimate without a choice
    assert f"needs about {need / 1024:.1f} GiB of memory" in text
    assert "may use 4.4 GiB (cgroup v1 /sys/fs/cgroup/memory/job/memory.limit_in_bytes)" in text
    assert f"sbatch --mem={int(np.ceil(need * 1.1 / 1024))}G" in text
    assert "[tokens]" in text and "machine with more memory" in text


def test_warn_lets_a_job_the_estimate_refuses_go_on(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """VOCABMAP_MEMORY_CHECK=warn, named in the error, for an estimate wrong on some machine:
    the refusal becomes a warning and the job goes on with the lower-memory choice."""
    with pytest.raises(memory.MemoryLimitError, match="set VOCABMAP_MEMORY_CHECK=warn"):
        memory.plan(NEMO, Limit(4500, "test"))
    monkeypatch.setenv("VOCABMAP_MEMORY_CHECK", "warn")
    went_on = memory.plan(NEMO, Limit(4500, "test"))
    assert went_on.in_place and "going on: VOCABMAP_MEMORY_CHECK=warn" in caplog.text
    memory.check_read(256000, 4096, Limit(4000, "test"))  # no error either


def test_fewer_tokens_is_offered_only_when_fewer_would_fit() -> None:
    with pytest.raises(memory.MemoryLimitError) as err:
        memory.plan(NEMO, Limit(3700, "test"))  # the 2.5 GiB matrix alone nearly fills it
    assert "[tokens]" not in str(err.value)
    with pytest.raises(memory.MemoryLimitError, match="whatever the token selection"):
        memory.check_read(256000, 4096, Limit(4000, "test"))
    memory.check_read(256000, 4096, Limit(7000, "test"))


def test_an_untied_models_second_matrix_is_checked_beside_the_first(tmp_path: Path) -> None:
    """An untied model's output matrix is read too, for the under-trained score: the check
    before that read counts both matrices, and so does the plan's under-trained stage."""
    from job import source
    from job.config import ModelConfig
    from tests.builders import tiny_llama

    calls: list[tuple[int, int, int]] = []
    folder = tiny_llama(tmp_path / "llama")
    emb = source.load(ModelConfig(id=str(folder)),
                      before_read=lambda rows, dims, matrices=1: calls.append(
                          (rows, dims, matrices)))
    n, dims = emb.matrix.shape
    assert not emb.tied and calls == [(n, dims, 1), (n, dims, 2)]
    memory.check_read(256000, 4096, Limit(7000, "test"))  # one 4,000 MiB matrix fits
    with pytest.raises(memory.MemoryLimitError, match="whatever the token selection"):
        memory.check_read(256000, 4096, Limit(7000, "test"), matrices=2)
    untied = memory.stage_arrays(Job(**{**vars(NEMO), "scored": 2}))
    assert untied["undertrained"] == 2 * memory.stage_arrays(NEMO)["undertrained"]


def test_the_gpu_path_compares_its_device_estimate_with_the_free_device_memory() -> None:
    job = Job(**{**vars(NEMO), "route": "exact", "backend": "cuml"})
    fits = memory.plan(job, None, Limit(80000, "GPU free memory"))
    assert fits.device is not None and fits.device["estimate_mib"] > 3 * 2560
    with pytest.raises(memory.MemoryLimitError, match="of GPU memory.*opentsne"):
        memory.plan(job, None, Limit(4000, "GPU free memory"))


def test_pca_in_place_gives_openTSNE_s_own_start_and_restores_the_rows() -> None:
    from openTSNE import initialization

    from job.reduce.opentsne import pca_in_place

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 1200), dtype=np.float32) + 0.5
    before = x.copy()
    expected = initialization.pca(x, random_state=7)
    assert np.array_equal(pca_in_place(x, 7), expected)
    np.testing.assert_allclose(x, before, atol=1e-6)


# --- real jobs inside memory cgroups ----------------------------------------------------------

def _own_memory_cgroup() -> Path | None:
    """This process's cgroup v1 memory folder, when a child with a limit can be made in it."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if os.access(folder, os.W_OK) and (folder / "memory.limit_in_bytes").is_file():
                return folder
    return None


@contextlib.contextmanager
def memory_cgroup(limit_mib: int) -> Iterator[Path]:
    """A child memory cgroup (v1) limited to ``limit_mib``, removed afterwards."""
    parent = _own_memory_cgroup()
    if parent is None:
        pytest.skip("no writable cgroup v1 memory controller here (needs root and "
                    "/sys/fs/cgroup/memory)")
    child = parent / f"vocabmap-test-{os.getpid()}-{limit_mib}"
    child.mkdir()
    try:
        (child / "memory.limit_in_bytes").write_text(str(limit_mib * MIB))
        yield child
    finally:
        with contextlib.suppress(OSError):
            child.rmdir()


def run_in_cgroup(cgroup: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m job ARGS`` with the process moved into ``cgroup`` before it starts."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU"):
        env.pop(name, None)
    script = f'echo $$ > "{cgroup}/cgroup.procs" && exec "$0" -m job "$@"'
    return subprocess.run(["sh", "-c", script, sys.executable, *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env=env)


# The tiny BERT (146 tokens x 32 dims) is estimated at the per-stage constants: 1,194 MiB
# (render). Measured on this 2-core AMD EPYC (2026-12-06), the job reaches its first check
# (before the matrix is read) with the cgroup's max_usage_in_bytes at 306-307 MiB (3 runs,
# limits 500/600/700 MiB), and a whole run peaks at 803 MiB RSS, 530 MiB cgroup usage
# (cgroup v1 charges shared library pages to the cgroup that first read them, so usage is
# below RSS here and would be higher on a fresh node). 500 MiB leaves 190 MiB above the
# check and stays far below the estimate.
TOO_SMALL_MIB = 500


def test_a_job_in_too_small_a_cgroup_stops_with_one_line_and_leaves_nothing(
        tmp_path: Path, bert_dir: Path) -> None:
    cfg = config(tmp_path, bert_dir)
    with memory_cgroup(TOO_SMALL_MIB) as cgroup:
        proc = run_in_cgroup(cgroup, "run", str(cfg))
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert f"may use {TOO_SMALL_MIB / 1024:.1f} GiB (cgroup v1 {cgroup}/memory.limit_in_bytes)" \
        in line
    assert "needs about" in line and "sbatch --mem=" in line
    assert files_under(tmp_path / "runs") == [] and not (tmp_path / "runs").exists()


def test_a_job_in_a_just_large_enough_cgroup_finishes_and_records_estimate_and_peak(
        tmp_path: Path, bert_dir: Path) -> None:
    job = Job(vocab=146, rows=146, dims=32, neighbours=15, route="exact", backend="opentsne",
              copy=False)
    # the check lets a job run from its estimate up (the run itself needs less: see above)
    enough = int(max(memory.stage_peaks(job).values())) + 20
    cfg = config(tmp_path, bert_dir)
    with memory_cgroup(enough) as cgroup:
        proc = run_in_cgroup(cgroup, "run", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, manifest = manifest_of(proc.stdout)
    assert manifest.value("memory", "limit_mib") == enough
    assert manifest.value("memory", "limit_from") == f"cgroup v1 {cgroup}/memory.limit_in_bytes"
    assert manifest.value("memory", "choice") == "none needed"
    assert (manifest.value("memory", "peak_mib") == manifest.value("peak_rss_mib")
            < manifest.value("memory", "estimate_mib") <= enough)
    assert "memory: estimated peak" in proc.stderr


def test_a_rerun_of_a_finished_layout_in_a_small_cgroup_reuses_it_and_damages_nothing(
        tmp_path: Path, bert_dir: Path) -> None:
    cfg = config(tmp_path, bert_dir)
    with memory_cgroup(2048) as cgroup:
        first = run_in_cgroup(cgroup, "run", str(cfg))
    assert first.returncode == 0, first.stderr[-3000:]
    folder, manifest = manifest_of(first.stdout)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with memory_cgroup(TOO_SMALL_MIB) as cgroup:  # no layout to make: nothing to refuse
        again = run_in_cgroup(cgroup, "run", str(cfg))
    assert again.returncode == 0, again.stderr[-3000:]
    _, rerun = manifest_of(again.stdout)
    assert rerun.value("layout_reused") and "estimate_over_peak" not in rerun.value("memory")
    assert rerun.value("memory", "estimate_mib") == manifest.value("memory", "estimate_mib")
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    changed = {name for name in before if after.get(name) != before[name]}
    assert changed == {"manifest.json", rundir.LOCK}, changed  # the lock: who holds it, since
