"""slurm/run.sh on a real one-node Slurm cluster started by scripts/slurm-cluster.sh.

One array submission maps the embedded default and a tiny BERT and fails a third model that
does not exist; the comparison job it submits runs after the array, compares the two and
names the failed one. A one-job submission then maps the tiny BERT again (reusing the
array's layout) and a second time under another name, and compares the two. The
input-output config (configs/input-output.toml, its model swapped for a tiny untied Llama)
maps both matrices of the model in one job and compares them token for token.
No GPU here: every submission overrides the script's ``--gres=gpu:1`` with ``--gres=none``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from job.runread import Manifest
from tests.builders import tiny_bert, twin_llama

ROOT = Path(__file__).resolve().parent.parent
CPU = ["--gres=none", "--cpus-per-task=1", "--mem=3G"]  # fits the test node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(c) is None for c in ("slurmctld", "slurmd", "sbatch", "munged")),
        reason="needs Debian's slurmctld, slurmd, slurm-client and munge "
               "(scripts/system-deps.sh installs them as root)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test cluster's daemons run as root"),
]

MODELS = """
[[models]]
id = "embedded:all-MiniLM-L6-v2"
[[models]]
id = "{tiny}"
"""
TINY_TWICE = """
[[models]]
id = "{tiny}"
[[models]]
id = "{tiny}"
name = "tiny-bert-2"
"""
BROKEN = """[[models]]
id = "{work}/no-such-model"
name = "broken"
"""
SETTINGS = """
[layout]
early_exaggeration_iter = 50
n_iter = 100
n_jobs = 1
[quality]
sample = 200
[render]
width = 300
height = 300
zoom_width = 300
zoom_height = 300
auto_zooms = 1
[compare]
aligned = true
[output]
dir = "{work}/runs"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running cluster; yields the environment for client commands and job submission."""
    folder = tmp_path_factory.mktemp("slurm")
    script = ROOT / "scripts" / "slurm-cluster.sh"
    started = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True,
                             text=True, timeout=120)
    if started.returncode != 0:
        subprocess.run(["bash", str(script), "stop", str(folder)], timeout=60)
        pytest.fail(f"cluster did not start: {started.stderr.strip()[-800:]}")
    env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"), VOCABMAP_HOME=str(ROOT))
    yield env | {"CLUSTER_DIR": str(folder)}
    subprocess.run(["bash", str(script), "stop", str(folder)], timeout=60)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The submit folder: logs/, the configs, the tiny model."""
    work = tmp_path_factory.mktemp("work")
    (work / "logs").mkdir()
    tiny = tiny_bert(work / "tiny-bert")
    models = MODELS.format(tiny=tiny)
    settings = SETTINGS.format(work=work)
    (work / "three.toml").write_text(models + BROKEN.format(work=work) + settings)
    (work / "two.toml").write_text(TINY_TWICE.format(tiny=tiny) + settings)
    (work / "bad.toml").write_text("[[models]]\nid = \"x\"\n[layout]\nperplexityy = 5\n")
    (work / "input-output.toml").write_text(input_output(twin_llama(work / "tiny-llama")[0])
                                            + settings)
    return work


def input_output(model: Path) -> str:
    """The models of configs/input-output.toml with ``model`` in place of each id (and its
    name), as TOML: the same pairs of matrices, a model this test can read."""
    import tomllib

    listed = tomllib.loads((ROOT / "configs" / "input-output.toml").read_text())["models"]
    assert {m["matrix"] for m in listed} == {"input", "output"}
    return "".join(f'[[models]]\nid = "{model}"\nmatrix = "{m["matrix"]}"\n' for m in listed)


def sbatch(env: dict[str, str], work: Path, *args: str, timeout: int = 400,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sbatch", "--wait", *CPU, *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout)


def job_id(proc: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"Submitted batch job (\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return found.group(1)


def finished(env: dict[str, str], timeout: float = 300, count: int = 1, **match: str,
             ) -> list[dict[str, str]]:
    """jobcomp records (one per finished job or task) whose fields equal ``match``; waits
    until there are ``count`` of them or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    path = Path(env["CLUSTER_DIR"]) / "jobcomp.txt"
    while True:
        text = path.read_text() if path.is_file() else ""
        records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in text.splitlines()]
        hits = [r for r in records if all(r.get(k) == v for k, v in match.items())]
        if len(hits) >= count or time.monotonic() > deadline:
            return hits
        time.sleep(1)


@pytest.fixture(scope="module")
def array_run(cluster: dict[str, str], work: Path) -> dict[str, object]:
    """`bash slurm/run.sh three.toml` on the "login node": it validates the config and runs
    `sbatch --array=0-2` on itself (here with --wait); then the comparison is waited for."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "slurm" / "run.sh"), "--wait", *CPU, "-J",
                           "vocabmap", "three.toml"], cwd=work, env=cluster,
                          capture_output=True, text=True, timeout=400)
    assert "3 model(s); submitting an array of 3 task(s)" in proc.stderr, proc.stderr
    array = job_id(proc)
    first_log = (work / "logs" / f"vocabmap_{array}_0.out").read_text()
    found = re.search(r"comparison submitted as job (\d+)", first_log)
    assert found, first_log
    compare = finished(cluster, JobId=found.group(1))
    return {"proc": proc, "array": array, "compare_id": found.group(1), "compare": compare,
            "seconds": time.monotonic() - start}


def test_array_maps_each_model_and_compares_after(array_run: dict, cluster: dict[str, str],
                                                  work: Path) -> None:
    array = array_run["array"]
    # sbatch --wait returns the highest exit code of the tasks: the broken model's
    assert array_run["proc"].returncode == 2, array_run["proc"].stderr
    tasks = {r["ArrayTaskId"]: r for r in finished(cluster, count=3, ArrayJobId=array)}
    assert {t: (r["JobState"], r["ExitCode"]) for t, r in tasks.items()} == {
        "0": ("COMPLETED", "0:0"), "1": ("COMPLETED", "0:0"), "2": ("FAILED", "2:0")}
    (cmp,) = array_run["compare"]
    assert (cmp["JobState"], cmp["ExitCode"], cmp["Name"]) == (
        "COMPLETED", "0:0", "vocabmap-compare")
    assert cmp["StartTime"] >= max(r["EndTime"] for r in tasks.values())
    logs = work / "logs"
    assert "vocabmap: error: model folder" in (logs / f"vocabmap_{array}_2.out").read_text()
    compare_log = (logs / f"vocabmap-compare_{array_run['compare_id']}.out").read_text()
    out = Path(compare_log.strip().splitlines()[-1])
    assert out.parent == work / "runs" and out.name.startswith("compare-")
    result = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in result["runs"]] == ["all-MiniLM-L6-v2", "tiny-bert"]
    (failed,) = result["failed"]
    assert Path(failed["run_dir"]).name.startswith("broken-")
    assert "does not exist" in failed["reason"]  # quoted from the task's log
    (pair,) = result["pairs"]
    assert pair["shared"] > 100 and pair["original"] and pair["map"]
    # the aligned layout ran in the CPU comparison job, after the map jobs
    aligned = result["aligned"][1]
    assert aligned["tokens"] > 100 and aligned["knn_preservation_aligned"] > 0
    md = (out / "compare.md").read_text()
    assert "| all-MiniLM-L6-v2 | tiny-bert |" in md and "broken-" in md
    for name in ("compare.html", "grid.png", "anchor_1.png", "aligned_grid.png", "moved_1.png",
                 "tokens_1.parquet"):
        assert (out / name).stat().st_size > 0
    # each task wrote only its own run directory, completely, with no temporary files; the
    # failed task left none
    runs = sorted(p.name.rsplit("-", 1)[0] for p in (work / "runs").iterdir())
    assert runs == ["all-MiniLM-L6-v2", "compare", "tiny-bert"]
    for label in ("all-MiniLM-L6-v2", "tiny-bert"):
        (folder,) = (work / "runs").glob(f"{label}-*")
        manifest = Manifest.read(folder)
        assert manifest.value("environment", "slurm_job")
        assert not manifest.value("layout_reused")
    assert not list((work / "runs").rglob(".*.tmp"))
    print(f"\nSlurm array + comparison: {array_run['seconds']:.0f} s\n" + md)


def test_one_job_reuses_layouts_and_compares(array_run: dict, cluster: dict[str, str],
                                             work: Path) -> None:
    proc = sbatch(cluster, work, str(ROOT / "slurm" / "run.sh"), "two.toml")
    assert proc.returncode == 0, proc.stderr
    log = (work / "logs" / f"vocabmap_{job_id(proc)}_4294967294.out").read_text()
    assert log.count("reusing the finished layout") == 1  # tiny-bert, mapped by the array
    out = Path(log.strip().splitlines()[-1])
    result = json.loads((out / "compare.json").read_text())
    assert len(result["runs"]) == 2 and result["failed"] == []


def test_bad_config_is_refused_before_submission(cluster: dict[str, str], work: Path) -> None:
    proc = subprocess.run(["bash", str(ROOT / "slurm" / "run.sh"), *CPU, "bad.toml"],
                          cwd=work, env=cluster, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown key 'layout.perplexityy'" in proc.stderr
    assert "Submitted" not in proc.stdout
    queue = subprocess.run(["squeue", "-h"], env=cluster, capture_output=True, text=True)
    assert queue.stdout.strip() == ""


def test_bad_config_in_plain_sbatch_fails_first_and_cancels_the_array(
        cluster: dict[str, str], work: Path) -> None:
    proc = sbatch(cluster, work, "--array=0-3", str(ROOT / "slurm" / "run.sh"), "bad.toml",
                  timeout=120)
    array = job_id(proc)
    assert proc.returncode != 0
    shown = subprocess.run(["scontrol", "-o", "show", "job", array], env=cluster,
                           capture_output=True, text=True).stdout
    states = {(r["JobState"], r["ExitCode"]) for r in
              (dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.splitlines())}
    # the tasks that started fail at once; they cancel the pending ones (never started)
    assert ("FAILED", "2:0") in states and states <= {("FAILED", "2:0"), ("CANCELLED", "0:0")}
    logs = "".join(p.read_text() for p in (work / "logs").glob(f"vocabmap_{array}_*.out"))
    assert "unknown key 'layout.perplexityy'" in logs and "comparison submitted" not in logs


def test_input_output_config_maps_both_matrices_and_compares(cluster: dict[str, str],
                                                             work: Path) -> None:
    proc = sbatch(cluster, work, str(ROOT / "slurm" / "run.sh"), "input-output.toml")
    log = (work / "logs" / f"vocabmap_{job_id(proc)}_4294967294.out").read_text()
    assert proc.returncode == 0, log[-2000:]
    out = Path(log.strip().splitlines()[-1])
    result = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in result["runs"]] == ["tiny-llama", "tiny-llama-output"]
    assert result["failed"] == []
    manifests = [json.loads((Path(r["run_dir"]) / "manifest.json").read_text())["model"]
                 for r in result["runs"]]
    assert [(m["matrix"], m["tied"]) for m in manifests] == [("input", False),
                                                             ("output", False)]
    assert [m["tensor"] for m in manifests] == ["model.embed_tokens.weight", "lm_head.weight"]
    (pair,) = result["pairs"]  # token for token: every matchable token is shared
    assert pair["shared"] == result["runs"][0]["keys"] == result["runs"][1]["keys"]
    assert result["aligned"][1]["tokens"] == result["runs"][1]["tokens"]
    assert (out / "aligned_grid.png").stat().st_size > 0
