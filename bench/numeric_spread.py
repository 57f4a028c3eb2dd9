"""The spread of every value the numeric tests assert on, across seeds, thread counts and CPU
code paths: what a threshold's margin must cover on a machine other than this one.

Each numeric test (``pytest -m numeric``) records the values it asserts on with pytest's
``record_property``. This script runs those tests once per configuration, in a fresh
process (thread counts and kernel choices are read at start-up), and prints, per value, its
minimum and maximum over all configurations and its value in each::

    python bench/numeric_spread.py                       # seed sets 0-3, 1 and 2 threads,
                                                         # two forced CPU code paths
    python bench/numeric_spread.py --seed-sets 0 1 --threads 1 --paths   # a quick look
    python bench/numeric_spread.py --slow                # the embedded default's tests too

A configuration is a seed set (``--seed-set``: every seeded input of the numeric tests is
drawn anew), a thread count (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``NUMBA_NUM_THREADS``) and a code path: ``native`` (what the CPU
picks), ``avx2`` (OpenBLAS's Haswell kernels and torch's AVX2 kernels, as on a CPU without
AVX-512). A failed test is reported with its configuration, and its recorded values still
count. Results go to ``bench/results/numeric_spread.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMBA_NUM_THREADS")
PATHS = {
    "native": {},
    # OpenBLAS and torch pick their kernels from the CPU at start-up; these force the AVX2
    # ones, the last digits a CPU without AVX-512 would give
    "avx2": {"OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2"},
}


def run_config(seed_set: int, threads: int, path: str, marker: str, junit: Path,
               ) -> tuple[dict[str, dict[str, float]], list[str], float]:
    """One pytest run of the numeric tests: recorded values per test, failed tests, seconds."""
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, str(threads)), **PATHS[path]}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker,
           "--seed-set", str(seed_set), f"--junitxml={junit}", "-o",
           "junit_family=xunit1"]
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - began
    values: dict[str, dict[str, float]] = {}
    failed = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').removeprefix('tests.')}::{case.get('name')}"
        for prop in case.iter("property"):
            values.setdefault(name, {})[prop.get("name")] = float(prop.get("value"))
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    return values, failed, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-sets", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--paths", nargs="*", default=None, choices=sorted(PATHS),
                        help="forced code paths, each run at seed set 0 and 2 threads "
                        "(default: all; none with a bare --paths)")
    parser.add_argument("--slow", action="store_true", help="include the slow tests")
    parser.add_argument("--only-slow", action="store_true", help="only the slow tests")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/numeric_spread.json")
    args = parser.parse_args(argv)
    configs = [(s, t, "native") for s, t in itertools.product(args.seed_sets, args.threads)]
    extra = sorted(PATHS) if args.paths is None else args.paths
    configs += [(0, 2, p) for p in extra if p != "native"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
              f"cores, {platform.node()}", "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                    time.gmtime()),
              "configs": [], "failed": {}}
    marker = ("numeric and slow" if args.only_slow else
              "numeric" if args.slow else "numeric and not slow")
    with tempfile.TemporaryDirectory() as tmp:
        for seed_set, threads, path in configs:
            label = f"seeds {seed_set}, {threads} thread{'s' * (threads > 1)}, {path}"
            values, failed, seconds = run_config(seed_set, threads, path, marker,
                                                 Path(tmp) / "junit.xml")
            print(f"{label}: {len(values)} tests recorded, {len(failed)} failed, "
                  f"{seconds:.0f} s", flush=True)
            report["configs"].append({"label": label, "seconds": round(seconds, 1)})
            if failed:
                report["failed"][label] = failed
            for test, props in values.items():
                for name, value in props.items():
                    table.setdefault(f"{test} {name}", {})[label] = value
    report["values"] = table
    print_table(table, report["failed"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\n{args.out}")
    return 0


def print_table(table: dict[str, dict[str, float]], failed: dict[str, list[str]]) -> None:
    """One line per recorded value: min and max over the configurations."""
    print(f"\n{'value':<100} {'min':>10} {'max':>10} {'runs':>5}")
    for key in sorted(table):
        vals = list(table[key].values())
        print(f"{key:<100} {min(vals):>10.4g} {max(vals):>10.4g} {len(vals):>5}")
    for label, tests in failed.items():
        print(f"FAILED in {label}: {', '.join(tests)}")


if __name__ == "__main__":
    raise SystemExit(main())
