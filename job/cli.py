"""Command line: ``python -m job run CONFIG`` (also ``vocabmap run …``), ``render``, ``check``.

Errors a user can fix (bad config, missing model, no GPU for cuML) end with one line on
standard error and a non-zero exit; the last line on standard output of ``run`` is the path
of the run directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from job import config as config_mod

USER_ERRORS: tuple[type[Exception], ...] = (config_mod.ConfigError,)


def _user_errors() -> tuple[type[Exception], ...]:
    from job.compare import CompareError
    from job.contextual import CorpusError
    from job.reduce import BackendError
    from job.render.zooms import ZoomError
    from job.rundir import RunDirError
    from job.source import SourceError

    return USER_ERRORS + (SourceError, BackendError, ZoomError, CompareError, CorpusError,
                          RunDirError)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("numba", "matplotlib", "PIL", "urllib3", "httpx", "filelock", "bokeh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from job import pipeline

    cfg = config_mod.with_overrides(config_mod.load(args.config), args.model, args.out)
    models = cfg.models
    if args.index is not None:
        if not 0 <= args.index < len(models):
            raise config_mod.ConfigError(f"--index {args.index} is out of range: the config "
                                         f"lists {len(models)} model(s) (0..{len(models) - 1})")
        models = (models[args.index],)
    if len(models) == 1:
        print(pipeline.run_model(models[0], cfg))
        return 0
    failed = []  # several models: one that fails does not stop the others
    for i, model in enumerate(models):
        try:
            print(pipeline.run_model(model, cfg), flush=True)
        except _user_errors() as err:
            logging.getLogger("job").error("model %d (%s) failed: %s", i, model.id, err)
            failed.append(f"model {i} ({model.id}): {err}")
    for line in failed:
        print(f"vocabmap: error: {line}", file=sys.stderr)
    return 2 if failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    import dataclasses

    from job import pipeline, rundir

    folder = Path(args.run_dir)
    if not (folder / rundir.LAYOUT).is_file():
        raise config_mod.ConfigError(f"{folder} has no {rundir.LAYOUT}; give a run directory "
                                     "made by `python -m job run`")
    if args.config:
        render = config_mod.load(args.config).render
    else:  # the run's own render settings
        stored = rundir.read_json(folder / rundir.MANIFEST)["config"]
        render = config_mod.from_dict({"render": stored["render"]}).render
    if args.color_by:
        render = dataclasses.replace(render, color_by=args.color_by)
    files = pipeline.rerender(folder, render)
    logging.getLogger("job").info("rendered %s", ", ".join(files))
    print(folder)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a config and print how many models it lists (used before submitting jobs)."""
    cfg = config_mod.load(args.config)
    print(len(cfg.models))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare run directories (given, or the ones a config's models write)."""
    from job import compare

    folders = [Path(f) for f in args.run_dirs]
    logs: list[Path | None] = [None] * len(folders)
    if args.config:
        cfg = config_mod.with_overrides(config_mod.load(args.config), out=args.runs)
        planned = compare.planned(cfg)
        if args.logs:
            logs += [Path(args.logs.format(index=i)) for i in range(len(planned))]
        else:
            logs += [None] * len(planned)
        folders += planned
    if args.dry_run:
        if not folders:
            raise compare.CompareError("no run directories given; pass them or --config")
        for folder in folders:
            print(folder)
        print(Path(args.out) if args.out else compare.output_dir(folders))
        return 0
    result = compare.compare(folders, Path(args.out) if args.out else None,
                             anchors=args.anchor, k=args.k, sample=args.sample,
                             color_by=args.color_by, log_files=logs)
    for failed in result["failed"]:
        print(f"vocabmap: not compared: {failed['run_dir']}: {failed['reason']}",
              file=sys.stderr)
    print(result["out"])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vocabmap", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="lay out and render the models of a config")
    run.add_argument("config", help="TOML config, e.g. configs/default.toml")
    run.add_argument("--model", help="hub id or local folder (overrides the config's models)")
    run.add_argument("--out", help="output folder for run directories (overrides output.dir)")
    run.add_argument("--index", type=int, help="run only the config's model number INDEX "
                     "(0-based; what a Slurm array task does)")
    run.set_defaults(func=cmd_run)
    render = sub.add_parser("render", help="re-render a finished run without recomputing")
    render.add_argument("run_dir")
    render.add_argument("--config", help="take [render] from this TOML instead of the run's")
    render.add_argument("--color-by", help="colour by this token-table column")
    render.set_defaults(func=cmd_render)
    check = sub.add_parser("check", help="validate a config; print its number of models")
    check.add_argument("config")
    check.set_defaults(func=cmd_check)
    cmp = sub.add_parser("compare", help="compare the maps of several runs")
    cmp.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="finished run directories")
    cmp.add_argument("--config", help="also compare every model of this config (its run "
                     "directories; a missing or unfinished one is reported as failed)")
    cmp.add_argument("--runs", help="with --config: the output.dir the runs went to")
    cmp.add_argument("--out", help="output folder (default: compare-<key> next to the runs)")
    cmp.add_argument("--anchor", action="append", help="anchor token for the side-by-side "
                     "zooms (repeatable; default: the first run's anchor zooms)")
    cmp.add_argument("--k", type=int, default=10, help="neighbours compared per token")
    cmp.add_argument("--sample", type=int, default=2000, help="shared tokens sampled as "
                     "queries for the neighbour overlap")
    cmp.add_argument("--color-by", default="category", help="token-table column to colour by")
    cmp.add_argument("--logs", help="with --config: log file of model INDEX, as a pattern "
                     "with {index}, to quote a failed model's error")
    cmp.add_argument("--dry-run", action="store_true", help="print the run directories and "
                     "the output folder, then stop")
    cmp.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except _user_errors() as err:
        print(f"vocabmap: error: {err}", file=sys.stderr)
        return 2
