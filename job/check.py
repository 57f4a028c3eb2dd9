"""``python -m job check CONFIG``: every check of a config that needs no model weights.

Config-wide problems raise (exit 2): the config itself, the layout backend on this machine,
the contextual corpus, two models sharing a run directory. Each model whose files are here
(a local folder or the embedded default) is checked as far as its folder and token table
allow: config.json and tokenizer files, the tokenizer loads, the token selection keeps
enough tokens, required anchor tokens exist, the perplexity fits the selection. A hub id is
left to the job (its files may only be in a compute node's cache).

A model that would fail is reported; the check fails only when every model would (``run``
maps the others and a Slurm array gives each model its own task).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from job import contextual, reduce, select, source, tokens
from job.config import Config, ModelConfig
from job.errors import VocabmapError
from job.render import zooms

log = logging.getLogger(__name__)


@dataclass
class ModelReport:
    """What the check found for one model: a summary, or the error ``run`` would end with."""

    index: int
    id: str
    summary: str = ""
    error: str = ""


@dataclass
class Report:
    models: list[ModelReport]
    backend: str  # "opentsne (CPU: …)", or "not checked"

    @property
    def failed(self) -> list[ModelReport]:
        return [m for m in self.models if m.error]


def _check_model(model: ModelConfig, config: Config) -> str:
    """A one-line summary of a model whose files are here; raises what ``run`` would."""
    found = source.local_folder(model)
    if found is None:
        return "hub id; its files are checked when the job reads them"
    folder, _ = found
    tokenizer = source.load_tokenizer(folder)
    table = tokens.build_table(tokenizer, source.tokenizer_rows(tokenizer),
                               tokens.vocab_file_tokens(folder))
    if model.embeddings == "contextual":  # the selection depends on the corpus counts
        return f"{len(table):,} tokens ({table.attrs['family']}); selection after the corpus"
    rows, _ = select.select(table, config.tokens)
    zooms.check_required(table.iloc[rows].reset_index(drop=True), config.render)
    select.fit_perplexity(config.layout, len(rows))
    which = ", output matrix" if model.matrix == "output" else ""
    return f"{len(table):,} tokens ({table.attrs['family']}), {len(rows):,} selected{which}"


def check(config: Config, backend: bool = True) -> Report:
    """Run every check that needs no weights; ``backend=False`` skips the backend check (a
    login node that submits jobs to GPU nodes)."""
    from job import compare

    compare.planned(config)  # no two models write one run directory
    if any(m.embeddings == "contextual" for m in config.models):
        contextual.check_corpus(config.contextual)
    chosen = "not checked"
    if backend:
        name, why = reduce.choose(config.layout.backend)
        chosen = f"{name} ({why})"
    reports = []
    for i, model in enumerate(config.models):
        report = ModelReport(i, model.id)
        try:
            report.summary = _check_model(model, config)
        except VocabmapError as err:  # BackendError included
            report.error = str(err)
        reports.append(report)
    return Report(reports, chosen)
