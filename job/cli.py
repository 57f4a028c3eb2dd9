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
    from job.reduce import BackendError
    from job.render.zooms import ZoomError
    from job.source import SourceError

    return USER_ERRORS + (SourceError, BackendError, ZoomError)


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
    folders = [pipeline.run_model(m, cfg) for m in models]
    for folder in folders:
        print(folder)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import dataclasses

    import pandas as pd

    from job import rundir
    from job.render import pictures

    folder = Path(args.run_dir)
    if not (folder / rundir.LAYOUT).is_file():
        raise config_mod.ConfigError(f"{folder} has no {rundir.LAYOUT}; give a run directory "
                                     "made by `python -m job run`")
    render = config_mod.load(args.config).render if args.config else None
    if render is None:
        stored = rundir.read_json(folder / rundir.MANIFEST)["config"]
        render = config_mod.from_dict({"render": stored["render"]}).render
    if args.color_by:
        render = dataclasses.replace(render, color_by=args.color_by)
    drawn = pictures.render_all(pd.read_parquet(folder / rundir.LAYOUT), render, folder)
    logging.getLogger("job").info("rendered %s", ", ".join(drawn["files"]))
    print(folder)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a config and print how many models it lists (used before submitting jobs)."""
    cfg = config_mod.load(args.config)
    print(len(cfg.models))
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except _user_errors() as err:
        print(f"vocabmap: error: {err}", file=sys.stderr)
        return 2
