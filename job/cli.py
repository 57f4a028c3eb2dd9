"""Command line of vocabmap: ``run``, ``render``, ``check``, ``compare``, ``neighbours`` and
``verify``.

Errors a user can fix (a bad config, a missing or damaged model, no GPU for cuML, a full disk)
end with one line on standard error, ``vocabmap: error: <what is wrong and what to do>``, and
exit code 2; ``--debug`` adds the traceback. Anything else is a bug and shows its traceback.
The last line on standard output of ``run`` is the path of the run directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from job import config as config_mod
from job.errors import VocabmapError, file_error

DESCRIPTION = "Map the whole token-embedding matrix of transformer models with t-SNE."
EPILOG = """commands:
  vocabmap run CONFIG            lay out and render every model of a config
  vocabmap check CONFIG          validate a config without reading model weights
  vocabmap render RUN_DIR        re-render a finished run
  vocabmap compare RUN_DIR ...   compare the maps of several runs
  vocabmap neighbours RUN_DIR TOKEN   a token's nearest neighbours in the model's space
  vocabmap verify RUN_DIR        ask the model to repeat its under-trained candidates

`vocabmap COMMAND --help` describes a command's options; `python -m job` works the same."""


def _fail(message: str, debug: bool) -> int:
    """Print the one error line (after the traceback with ``--debug``); exit code 2."""
    if debug:
        traceback.print_exc()
    line = " ".join(str(message).split())
    print(f"vocabmap: error: {line}", file=sys.stderr)
    return 2


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    # openTSNE logs "KNN index provided. Ignoring KNN-related parameters." on every run
    for noisy in ("numba", "matplotlib", "PIL", "urllib3", "httpx", "filelock", "bokeh",
                  "openTSNE"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from job import pipeline

    cfg = config_mod.with_overrides(config_mod.load(args.config), args.model, args.out,
                                    args.matrix)
    models = cfg.models
    if args.index is not None:
        if not 0 <= args.index < len(models):
            raise config_mod.ConfigError(f"--index {args.index} is out of range: the config "
                                         f"lists {len(models)} model(s) (0..{len(models) - 1})")
        models = (models[args.index],)
    def run_one(model: config_mod.ModelConfig) -> Path:
        folder = pipeline.run_model(model, cfg)
        if cfg.verify.enabled:  # [verify] enabled: ask the model right after its map
            from job import verify

            verify.verify_run(folder, cfg.verify)
        return folder

    if len(models) == 1:
        print(run_one(models[0]))
        return 0
    failed = []  # several models: one that fails does not stop the others
    for i, model in enumerate(models):
        try:
            print(run_one(model), flush=True)
        except VocabmapError as err:
            logging.getLogger("job").error("model %d (%s) failed: %s", i, model.id, err)
            failed.append(f"model {i} ({model.id}): {err}")
    for line in failed:
        print(f"vocabmap: error: {line}", file=sys.stderr)
    return 2 if failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    import dataclasses

    from job import render_cache, rundir
    from job.runread import Manifest

    folder = Path(args.run_dir)
    if not (folder / rundir.LAYOUT).is_file():
        raise config_mod.ConfigError(f"{folder} has no {rundir.LAYOUT}; give a run directory "
                                             "directory made by `python -m job run`")
    if args.config:
        render = config_mod.load(args.config).render
    else:  # the run's own render settings
        stored = Manifest.read(folder).render
        render = config_mod.from_dict({"render": stored}).render
    if args.color_by:
        render = dataclasses.replace(render, color_by=args.color_by)
    files = render_cache.rerender(folder, render)
    logging.getLogger("job").info("rendered %s", ", ".join(files))
    print(folder)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a config without reading model weights; print what it maps (``--count``: only
    the number of models, for scripts). Fails when the config, the backend or the corpus
    is wrong, or when every model would fail; a single failing model of several is a
    warning, as ``run`` maps the others."""
    from job import check

    cfg = config_mod.load(args.config)
    report = check.check(cfg, backend=not args.no_backend)
    if len(report.failed) == len(report.models):
        raise VocabmapError(report.failed[0].error if len(report.models) == 1 else
                                  "every model would fail: " + "; ".join(
                                      f"model {m.index} ({m.id}): {m.error}"
                                      for m in report.failed))
    for m in report.failed:
        print(f"vocabmap: warning: model {m.index} ({m.id}) would fail: {m.error}",
              file=sys.stderr)
    if args.count:
        print(len(cfg.models))
        return 0
    failing = f", {len(report.failed)} would fail" if report.failed else ""
    print(f"{args.config}: OK: {len(report.models)} model(s){failing}; layout backend: "
          f"{report.backend}")
    for m in report.models:
        print(f"  model {m.index}: {m.id}: {m.summary or 'FAILS: ' + m.error}")
    return 0


def _compare_config(args: argparse.Namespace, base: config_mod.CompareConfig,
                    ) -> config_mod.CompareConfig:
    """``[compare]`` of the config (or the defaults) with the command line's flags applied."""
    import dataclasses

    given = {"k": args.k, "sample": args.sample, "permutations": args.permutations,
             "color_by": args.color_by, "aligned": args.aligned,
             "anchors": args.anchor and list(args.anchor)}
    given = {key: value for key, value in given.items() if value is not None}
    merged = {**dataclasses.asdict(base), **given}
    return config_mod.from_dict({"compare": merged}).compare


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare run directories (given, or the ones a config's models write)."""
    from job import compare

    folders = [Path(f) for f in args.run_dirs]
    logs: list[Path | None] = [None] * len(folders)
    base = config_mod.CompareConfig()
    if args.config:
        cfg = config_mod.with_overrides(config_mod.load(args.config), out=args.runs)
        base = cfg.compare
        planned = compare.planned(cfg)
        if args.logs:
            logs += [Path(args.logs.format(index=i)) for i in range(len(planned))]
        else:
            logs += [None] * len(planned)
        folders += planned
    settings = _compare_config(args, base)
    if args.dry_run:
        if not folders:
            raise compare.CompareError("no run directories given; pass them or --config")
        for folder in folders:
            print(folder)
        print(Path(args.out) if args.out else compare.output_dir(folders))
        return 0
    result = compare.compare(folders, Path(args.out) if args.out else None, settings,
                             log_files=logs)
    for failed in result["failed"]:
        print(f"vocabmap: not compared: {failed['run_dir']}: {failed['reason']}",
              file=sys.stderr)
    print(result["out"])
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    """Print a token's original-space neighbours from the run's ``neighbours.parquet``: one
    line each with rank, cosine similarity, whether it is also a map neighbour, token id and
    display text (tab-separated)."""
    from job import lookup

    rows = lookup.listing(Path(args.run_dir), args.token, args.k)
    print("rank\tsimilarity\ton_map\ttoken_id\ttoken")
    for r in rows.itertuples():
        print(f"{r.rank}\t{r.similarity:.4f}\t{'yes' if r.map_neighbour else 'no'}\t"
              f"{r.neighbour_id}\t{r.display}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a finished run's under-trained candidates (job/verify.py); the run's own
    ``[verify]`` settings, else the defaults, with the flags applied."""
    import dataclasses

    from job import rundir, verify
    from job.runread import Manifest

    folder = Path(args.run_dir)
    if not (folder / rundir.LAYOUT).is_file():
        raise verify.VerifyError(f"{folder} has no {rundir.LAYOUT}; give a run directory "
                                 "made by `python -m job run`")
    settings = config_mod.from_dict({"verify": Manifest.read(folder).verify_settings}).verify
    given = {"top": args.top, "batch_size": args.batch_size, "device": args.device}
    merged = dataclasses.asdict(settings) | {k: v for k, v in given.items() if v is not None}
    written = verify.verify_run(folder, config_mod.from_dict({"verify": merged}).verify)
    if written:
        print(written)
    return 0


def _flags(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """-v and --debug, accepted before or after the command (a command's own copy keeps
    what was given before it: its default is SUPPRESS)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logging")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, also print the traceback (implies -v)")


class _Version(argparse.Action):
    """``--version``: the version, and the git revision when run from a checkout."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from job import __version__, rundir

        revision = rundir.git_revision()
        print(f"vocabmap {__version__}" + (f" (git {revision})" if revision else ""))
        parser.exit()


def _arg(*names: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return names, options


def _commands() -> list[tuple[str, str, Callable[[argparse.Namespace], int], list[Any]]]:
    """Each command: name, help, function and arguments (``_arg``: add_argument's)."""
    run = [_arg("config", help="TOML config, e.g. configs/default.toml"),
           _arg("--model", help="hub id or local folder (overrides the config's models)"),
           _arg("--out", help="output folder for run directories (overrides output.dir)"),
           _arg("--matrix", choices=("input", "output"), help="which matrix every model "
                "maps: input embeddings or output (unembedding); overrides models[].matrix"),
           _arg("--index", type=int, help="run only the config's model number INDEX "
                "(0-based; what a Slurm array task does)")]
    render = [_arg("run_dir"),
              _arg("--config", help="take [render] from this TOML instead of the run's"),
              _arg("--color-by", help="colour by this token-table column (category, script, "
                   "pos, or undertrained: a colour scale)")]
    check = [_arg("config"),
             _arg("--count", action="store_true",
                  help="print only the number of models (for scripts)"),
             _arg("--no-backend", action="store_true", help="skip the check that the layout "
                  "backend runs on this machine (a login node that submits to GPU nodes)")]
    neighbours = [_arg("run_dir"),
                  _arg("token", help="display text, else raw token (e.g. ##ing, Ġworld), "
                       "else token id"),
                  _arg("--k", type=int, help="show only the first K (default: all stored)")]
    verify = [_arg("run_dir"),
              _arg("--top", type=int, help="verify the first TOP ordinary candidates of "
                   "undertrained.csv (verify.top, 200)"),
              _arg("--batch-size", type=int, help="prompts per forward pass (verify.batch_size)"),
              _arg("--device", choices=["auto", "cuda", "cpu"],
                   help="where the model runs (verify.device; auto: the GPU when present)")]
    return [("run", "lay out and render the models of a config", cmd_run, run),
            ("render", "re-render a finished run without recomputing", cmd_render, render),
            ("check", "check a config as far as possible without model weights", cmd_check,
             check),
            ("compare", "compare the maps of several runs", cmd_compare, _compare_args()),
            ("neighbours", "a token's nearest neighbours in the model's embedding space (from "
             "the run's neighbours.parquet)", cmd_neighbours, neighbours),
            ("verify", "ask the model to repeat its most under-trained tokens (verified.csv)",
             cmd_verify, verify)]


def _compare_args() -> list[Any]:
    return [
        _arg("run_dirs", nargs="*", metavar="RUN_DIR", help="finished run directories"),
        _arg("--config", help="also compare every model of this config (its run directories; "
             "a missing or unfinished one is reported as failed)"),
        _arg("--runs", help="with --config: the output.dir the runs went to"),
        _arg("--out", help="output folder (default: compare-<key> next to the runs)"),
        _arg("--anchor", action="append", help="anchor token for the side-by-side zooms "
             "(repeatable; default: compare.anchors, else the first run's anchor zooms)"),
        _arg("--k", type=int, help="neighbours compared per token (compare.k, 10)"),
        _arg("--sample", type=int, help="compare a random subset of this many shared tokens "
             "(compare.sample; 0 = all, the default)"),
        _arg("--permutations", type=int, help="shuffles of the token correspondence for the "
             "null (compare.permutations, 100)"),
        _arg("--aligned", action=argparse.BooleanOptionalAction, default=None,
             help="also lay out the later runs from the first run's map (compare.aligned; "
             "openTSNE on the CPU)"),
        _arg("--color-by", help="token-table column to colour by (compare.color_by; "
             "undertrained: one colour scale)"),
        _arg("--logs", help="with --config: log file of model INDEX, as a pattern with "
             "{index}, to quote a failed model's error"),
        _arg("--dry-run", action="store_true", help="print the run directories and the "
             "output folder, then stop")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vocabmap", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _flags(p, default=False)
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print the version (and the git revision of a checkout) and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, about, func, arguments in _commands():
        command = sub.add_parser(name, help=about)
        for names, options in arguments:
            command.add_argument(*names, **options)
        command.set_defaults(func=func)
        _flags(command)
    return p


def main(argv: list[str] | None = None) -> int:
    # without torch (safetensors models need none), transformers would advise on every run
    # that "PyTorch was not found"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = parser().parse_args(argv)
    _setup_logging(args.verbose or args.debug)
    try:
        return args.func(args)
    except VocabmapError as err:
        return _fail(str(err), args.debug)
    except OSError as err:  # the environment: a full disk, a folder that cannot be written
        return _fail(str(file_error(err, err.filename or "a file-system call")), args.debug)
