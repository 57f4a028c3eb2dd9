"""Typed run configuration: defaults in one place, TOML loading, validation.

A config file is a short diff from the defaults below. Every key is checked before any work
starts: a misspelt key or a bad value raises :class:`ConfigError` naming the key and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from job.errors import VocabmapError

EMBEDDED_DEFAULT = "embedded:all-MiniLM-L6-v2"


class ConfigError(VocabmapError, ValueError):
    """A config value is missing, misspelt or out of range; the message says which and why."""


def model_name(model_id: str) -> str:
    """A model's short name: the last part of its hub id or folder (``embedded:`` dropped)."""
    return model_id.removeprefix("embedded:").rstrip("/").split("/")[-1]


@dataclass(frozen=True)
class ModelConfig:
    """Which model to map: a Hugging Face id, a local folder, or the embedded default."""

    id: str = EMBEDDED_DEFAULT
    revision: str = ""  # branch, tag or commit for a hub id; "" = the default branch
    name: str = ""  # short label for outputs; "" = derived from the id
    # "input": the input-embedding matrix; "contextual": the model's output vectors averaged
    # per token over the corpus in [contextual]
    embeddings: Literal["input", "contextual"] = "input"
    # which vocabulary matrix: "input" = the input embeddings; "output" = the unembedding
    # (lm_head); a tied model maps the same rows either way (docs/matrices.md)
    matrix: Literal["input", "output"] = "input"


@dataclass(frozen=True)
class ContextualConfig:
    """Contextual token vectors: a layer's outputs averaged per vocabulary token over a corpus."""

    corpus: tuple[str, ...] = ()  # .txt (one text per line), .jsonl or .parquet files
    column: str = "text"  # the text field of .jsonl / .parquet files
    layer: int = -1  # hidden-state index: 0 = embedding output, -1 = last layer
    min_count: int = 2  # tokens seen fewer times are left out (and counted in the manifest)
    batch_size: int = 32
    max_length: int = 128  # tokens per text; longer texts are truncated
    max_texts: int = 0  # 0 = the whole corpus
    device: Literal["auto", "cuda", "cpu"] = "auto"


@dataclass(frozen=True)
class TokensConfig:
    """Which vocabulary rows to lay out (the default: all of them)."""

    select: Literal["all", "first", "last", "ids", "regex"] = "all"
    n: int = 3000  # for select = "first" / "last"
    ids: tuple[int, ...] = ()  # for select = "ids"
    regex: str = ""  # for select = "regex": matched against the display text
    categories: tuple[str, ...] = ()  # keep only these categories; () = every category
    scripts: tuple[str, ...] = ()  # keep only these scripts; () = every script


@dataclass(frozen=True)
class LayoutConfig:
    """t-SNE settings shared by every backend (Kobak & Berens 2019, Belkina et al. 2019).

    The iteration counts were tuned on the embedded default (30,522 tokens): with the
    learning rate N / exaggeration per phase, 125 + 250 iterations keep as many neighbours
    as 250 + 500 at N / 12 did, in half the time (docs/benchmarks.md).
    """

    backend: Literal["auto", "opentsne", "cuml", "sklearn"] = "auto"
    metric: Literal["cosine", "euclidean"] = "cosine"
    perplexity: float = 30.0  # neighbours per point: 3 × perplexity
    n_iter: int = 250  # iterations after early exaggeration
    early_exaggeration_iter: int = 125
    early_exaggeration: float = 12.0
    # "auto" = N / exaggeration of each phase (N / 12, then N), at least 200; cuML can only
    # double its rate after early exaggeration (N / 6), see job/reduce/cuml.py.
    learning_rate: float | Literal["auto"] = "auto"
    seed: int = 42
    # cuML: true = seeded, deterministic FFT path (same map on every rerun; cuML PR #8123
    # measured it 1.5-2.8x slower); false = cuML's fastest path, which varies run to run.
    # openTSNE (CPU) is deterministic for a seed either way.
    deterministic: bool = True
    # neighbour search: "auto" = exact float32 where cheap, int8 products for large N² · d on
    # CPUs that multiply int8 fast (job/search.py); "exact" / "int8" force one.
    knn: Literal["auto", "exact", "int8"] = "auto"
    n_jobs: int = -1  # CPU threads; -1 = all cores


@dataclass(frozen=True)
class QualityConfig:
    """kNN preservation: share of each sampled token's k nearest neighbours kept on the map."""

    k: int = 10
    sample: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class ZoomConfig:
    """One labelled zoom: a box in map coordinates, or a window around an anchor token."""

    name: str = ""
    box: tuple[float, ...] = ()  # (x0, x1, y0, y1) in map coordinates
    anchor: str = ""  # display text (or raw token) to centre on
    neighbours: int = 60  # the window is sized to hold about this many nearest tokens
    # an anchor the model lacks skips the zoom with a warning; required = true makes it an
    # error, found before the layout starts
    required: bool = False


@dataclass(frozen=True)
class RenderConfig:
    """Pictures: sizes, colouring, zoom regions, the interactive page."""

    # any categorical column of the token table, or "undertrained" (a colour scale)
    color_by: str = "category"
    width: int = 1600
    height: int = 1600
    zoom_width: int = 1100
    zoom_height: int = 1100
    auto_zooms: int = 3  # zooms picked from the densest clusters, besides the configured ones
    # a zoom named "undertrained" around the densest group of this many highest-scoring
    # ordinary tokens (placeholders and special tokens left out); 0 = none
    undertrained_zoom: int = 150
    max_labels: int = 250  # labels per zoom at most
    font_size: int = 15
    html: bool = True  # the interactive map.html
    html_max_labels: int = 300  # labels on the page at once at most
    html_label_points: int = 3000  # the page labels tokens once at most this many are in view
    # original-space neighbours kept per token (neighbours.parquet, the page's neighbour
    # panel); 0 leaves them out of the page. Taken from the layout's kNN graph
    neighbours: int = 10
    zooms: tuple[ZoomConfig, ...] = ()
    # shorthand: one anchor zoom per token, named after it; a token missing from a model's
    # vocabulary is skipped with a warning, so one list can serve several models
    anchors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompareConfig:
    """``compare``: how several maps are measured against each other and drawn.

    Agreement is the mutual k-NN overlap (Huh et al. 2024) over the shared tokens, calibrated
    against a permutation null of the token correspondence (Gröger, Wen & Brbić 2026).
    """

    k: int = 10  # neighbours compared per token
    # 0 = every shared token; N = a fixed random subset of N shared tokens (neighbours are
    # then searched among the subset), for very large vocabularies
    sample: int = 0
    permutations: int = 100  # permutations of the token correspondence for the null
    alpha: float = 0.05  # the calibrated score is 0 up to the null's (1 - alpha) quantile
    seed: int = 0
    listed: int = 15  # most changed / most stable tokens listed per pair, labelled when moved
    color_by: str = "category"
    anchors: tuple[str, ...] = ()  # () = the first run's anchor zooms, else 1990 Japan king 日本
    # true: lay out the second and later models again, starting from the first model's map
    # (openTSNE, on the CPU), so the same token lands in comparable places
    aligned: bool = False


@dataclass(frozen=True)
class VerifyConfig:
    """Ask the model to repeat its most under-trained candidates (``vocabmap verify``;
    job/verify.py). Needs torch and a model with a language-model head."""

    enabled: bool = False  # verify each model right after its map (`run`, the Slurm job)
    top: int = 200  # candidates: the first ordinary tokens of undertrained.csv
    batch_size: int = 16  # prompts per forward pass
    max_new_tokens: int = 3  # greedy steps in which the token may come (magikarp: 3)
    device: Literal["auto", "cuda", "cpu"] = "auto"


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "runs"


@dataclass(frozen=True)
class Config:
    models: tuple[ModelConfig, ...] = (ModelConfig(),)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    contextual: ContextualConfig = field(default_factory=ContextualConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def model(self) -> ModelConfig:
        """The single model of a one-model config."""
        return self.models[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHECKS: dict[str, Any] = {
    "tokens.n": lambda v: v > 0 or "must be > 0",
    "layout.perplexity": lambda v: 1 <= v <= 500 or "must be between 1 and 500",
    "layout.n_iter": lambda v: v > 0 or "must be > 0",
    "layout.early_exaggeration_iter": lambda v: v >= 0 or "must be >= 0",
    "layout.early_exaggeration": lambda v: v >= 1 or "must be >= 1",
    "layout.learning_rate": lambda v: v == "auto" or v > 0 or 'must be "auto" or > 0',
    "layout.n_jobs": lambda v: v == -1 or v > 0 or "must be -1 (all cores) or > 0",
    "quality.k": lambda v: v > 0 or "must be > 0",
    "contextual.min_count": lambda v: v >= 1 or "must be >= 1",
    "contextual.batch_size": lambda v: v >= 1 or "must be >= 1",
    "contextual.max_length": lambda v: 2 <= v <= 100_000 or "must be between 2 and 100000",
    "contextual.max_texts": lambda v: v >= 0 or "must be >= 0 (0 = all)",
    "quality.sample": lambda v: v > 0 or "must be > 0",
    "compare.k": lambda v: v > 0 or "must be > 0",
    "compare.sample": lambda v: v == 0 or v >= 3 or "must be 0 (every shared token) or >= 3",
    "compare.permutations": lambda v: 1 <= v <= 100_000 or "must be between 1 and 100000",
    "compare.alpha": lambda v: 0 < v < 1 or "must be between 0 and 1 (exclusive)",
    "compare.listed": lambda v: 0 <= v <= 1000 or "must be between 0 and 1000",
    "verify.top": lambda v: 1 <= v <= 100_000 or "must be between 1 and 100000",
    "verify.batch_size": lambda v: v >= 1 or "must be >= 1",
    "verify.max_new_tokens": lambda v: 1 <= v <= 64 or "must be between 1 and 64",
    "render.width": lambda v: 64 <= v <= 20000 or "must be between 64 and 20000",
    "render.height": lambda v: 64 <= v <= 20000 or "must be between 64 and 20000",
    "render.zoom_width": lambda v: 64 <= v <= 20000 or "must be between 64 and 20000",
    "render.zoom_height": lambda v: 64 <= v <= 20000 or "must be between 64 and 20000",
    "render.auto_zooms": lambda v: 0 <= v <= 24 or "must be between 0 and 24",
    "render.max_labels": lambda v: v >= 0 or "must be >= 0",
    "render.undertrained_zoom": lambda v: v >= 0 or "must be >= 0 (0 = no such zoom)",
    "render.font_size": lambda v: 6 <= v <= 96 or "must be between 6 and 96",
    "render.html_max_labels": lambda v: v >= 0 or "must be >= 0",
    "render.html_label_points": lambda v: v >= 0 or "must be >= 0",
    "render.neighbours": lambda v: 0 <= v <= 100 or "must be between 0 and 100",
    "render.zooms.box": lambda v: len(v) in (0, 4) and (not v or (v[0] < v[1] and v[2] < v[3]))
    or "must be [x0, x1, y0, y1] with x0 < x1 and y0 < y1",
    "render.zooms.neighbours": lambda v: v >= 2 or "must be >= 2",
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the dataclass's form."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{key} = {value!r} is not allowed; choose one of: {shown}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err).split("; ", 1)[-1])
        raise ConfigError(f"{key} = {value!r} is not allowed; {' or '.join(errors)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a list")
        (item_tp, _) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} is not allowed as {value!r}; expected a table")
        return _build(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool) or (
        tp is not bool and isinstance(value, bool)
    ):
        raise ConfigError(f"{key} = {value!r} is not allowed; expected {_type_name(tp)}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key} = {value!r} is not allowed; expected {_type_name(tp)}")
    return value


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, raw in table.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(
                f"unknown key {full!r}; allowed keys{' in [' + prefix + ']' if prefix else ''}: "
                + ", ".join(names)
            )
        value = _coerce(raw, hints[key], full)
        check = _CHECKS.get(re.sub(r"\[\d+\]", "", full))
        if check is not None:
            verdict = check(value)
            if verdict is not True:
                raise ConfigError(f"{full} = {raw!r} is not allowed; {verdict}")
        values[key] = value
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document and fill in the defaults."""
    data = dict(data)
    if "model" in data and "models" in data:
        raise ConfigError("give either [model] or [[models]], not both")
    if "model" in data:
        data["models"] = [data.pop("model")]
    if "models" in data and not data["models"]:
        raise ConfigError("models is empty; list at least one [[models]] entry with an id")
    config = _build(Config, data, "")
    for i, m in enumerate(config.models):
        if not m.id.strip():
            raise ConfigError(f"models[{i}].id is empty; give a hub id, a folder or "
                              f"{EMBEDDED_DEFAULT!r}")
    if any(m.embeddings == "contextual" for m in config.models) and not config.contextual.corpus:
        raise ConfigError('models[].embeddings = "contextual" needs a corpus: set '
                          '[contextual] corpus = ["path/to/texts.txt"]')
    if any(m.embeddings == "contextual" and m.matrix == "output" for m in config.models):
        raise ConfigError('models[].matrix = "output" maps the unembedding rows, which a '
                          'contextual run does not read; drop matrix or embeddings')
    _check_tokens(config.tokens)
    _check_zooms(config.render)
    return config


def _check_tokens(cfg: TokensConfig) -> None:
    """The selection rule has what it needs, and its regex compiles."""
    if cfg.select == "ids" and not cfg.ids:
        raise ConfigError('tokens.select = "ids" needs tokens.ids = [..] with token ids')
    if cfg.select == "regex":
        if not cfg.regex:
            raise ConfigError('tokens.select = "regex" needs tokens.regex = "..."')
        try:
            re.compile(cfg.regex)
        except re.error as err:
            raise ConfigError(f"tokens.regex {cfg.regex!r} is not a valid regex ({err}); "
                              "fix the pattern (Python re syntax)") from err


def _check_zooms(cfg: RenderConfig) -> None:
    """Every zoom is named, once, and is either a box or an anchor."""
    names = [z.name for z in cfg.zooms] + list(cfg.anchors)
    for z in cfg.zooms:
        if not z.name:
            raise ConfigError("render.zooms entry without a name; add name = \"...\"")
        if bool(z.box) == bool(z.anchor):
            raise ConfigError(f"render.zooms {z.name!r} needs exactly one of box or anchor")
        if z.required and not z.anchor:
            raise ConfigError(f"render.zooms {z.name!r}: required = true applies to anchor "
                              "zooms only")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"render zoom names {twice} are used more than once (in zooms or "
                          "anchors); give each zoom its own name")


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass a path such as "
                          "configs/default.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file; save the config as UTF-8 "
                          "TOML") from err
    return from_dict(data)


def with_overrides(config: Config, model: str | None = None, out: str | None = None,
                   matrix: str | None = None) -> Config:
    """The config with ``--model`` / ``--out`` / ``--matrix`` from the command line applied
    (``--matrix`` sets every model's ``matrix``)."""
    if model:
        config = dataclasses.replace(config, models=(ModelConfig(id=model),))
    if matrix:
        models = [dataclasses.asdict(m) | {"matrix": matrix} for m in config.models]
        checked = from_dict({"models": models, "contextual": dataclasses.asdict(
            config.contextual)})
        config = dataclasses.replace(config, models=checked.models)
    if out:
        config = dataclasses.replace(config, output=OutputConfig(dir=out))
    return config
