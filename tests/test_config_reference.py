"""docs/reference/config.md is generated from job/config.py and kept current."""

from __future__ import annotations

import importlib.util
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from job import config

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("config_reference",
                                               ROOT / "scripts" / "config_reference.py")
assert _spec and _spec.loader
generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generator)


def test_committed_reference_is_current() -> None:
    committed = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert committed == generator.reference(config), (
        "docs/reference/config.md is stale: regenerate it with "
        "`python scripts/config_reference.py` and commit it")


def test_reference_lists_every_key_with_its_default_and_rule() -> None:
    page = generator.reference(config)
    assert "| `perplexity` | float | `30.0` | must be between 1 and 500 |" in page
    assert '| `backend` | string | `"auto"` | "auto", "opentsne", "cuml", "sklearn" |' in page
    assert "## `render.zooms` entries" in page
    for section in ("tokens", "layout", "quality", "contextual", "render", "compare", "output"):
        assert f"## `[{section}]`" in page


@dataclass(frozen=True)
class _Model(config.ModelConfig):
    matrix: Literal["input", "output"] = "input"  # which matrix to map


@dataclass(frozen=True)
class _Verify:
    """How under-trained tokens are verified."""

    prompts: int = 20  # prompts per token


@dataclass(frozen=True)
class _Config:
    models: tuple[_Model, ...] = (_Model(),)
    verify: _Verify = field(default_factory=_Verify)


def test_a_new_section_and_key_appear_without_editing_the_generator() -> None:
    module = types.SimpleNamespace(
        Config=_Config, _CHECKS={"verify.prompts": lambda v: v > 0 or "must be > 0"})
    page = generator.reference(module)  # type: ignore[arg-type]
    assert '| `matrix` | string | `"input"` | "input", "output" | which matrix to map |' in page
    assert "## `[verify]`\n\nHow under-trained tokens are verified." in page
    assert "| `prompts` | integer | `20` | must be > 0 | prompts per token |" in page
