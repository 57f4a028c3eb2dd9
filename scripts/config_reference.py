"""Write the configuration reference (docs/reference/config.md) from job/config.py itself.

Every section is a field of ``Config`` whose type is a dataclass (or a list of them); every key
is a field of that dataclass, with its type, its default, the values the annotation allows
(``Literal``), the rule ``_CHECKS`` applies to it, and the comments written beside it in the
source. A key or section added to job/config.py appears here without an edit to this script;
tests/test_config_reference.py fails while the committed page is stale.

Usage: python scripts/config_reference.py [OUTPUT]   (default: docs/reference/config.md)
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "reference" / "config.md"
COMMAND = "python scripts/config_reference.py"

HEADER = f"""# Configuration reference

Generated from `job/config.py` by `{COMMAND}`; do not edit by hand (a test
fails when this page is stale). A config file sets only what differs from these defaults:
see [Configuration](../configuration.md). Every key is checked before any work starts.
"""


def type_name(tp: Any) -> str:
    """A TOML reader's name for an annotation: string, integer, float, boolean, list of ..."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        kinds = {type(a) for a in typing.get_args(tp)}
        return " or ".join(sorted(type_name(k) for k in kinds))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(t) for t in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return "list of tables" if dataclasses.is_dataclass(item) else f"list of {type_name(item)}"
    return {str: "string", int: "integer", float: "float", bool: "boolean"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def toml_value(value: Any) -> str:
    """A default as it would be written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def allowed(tp: Any, check: Any) -> str:
    """The values the annotation allows and the rule the validation applies, in words."""
    parts = []
    options = [tp]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = list(typing.get_args(tp))
    for option in options:
        if typing.get_origin(option) is Literal:
            parts.append(", ".join(toml_value(a) for a in typing.get_args(option)))
    if check is not None:  # the message a failing value gets, taken from the rule itself
        parts += [c for c in check.__code__.co_consts if isinstance(c, str) and " " in c]
    return "; ".join(parts)


def prose(text: str) -> str:
    """Source comments and docstrings as Markdown: one line, ``x`` as `x`, () as []."""
    return " ".join(text.split()).replace("``", "`").replace("()", "[]")


def comments(cls: type) -> dict[str, str]:
    """Each field's comments in the class source: the lines above it and the one beside it."""
    found: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        field = re.match(r"(\w+)\s*:[^=]*(?:=.*)?$", text)
        if field and not text.startswith(("def ", "return")):
            beside = text.split("  # ", 1)[1] if "  # " in text else ""
            found[field.group(1)] = prose(" ".join([*above, beside]))
        above = []
    return found


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def table(cls: type, prefix: str, checks: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """The rows of one section (and the list-of-table keys below it, to describe next)."""
    hints = typing.get_type_hints(cls)
    notes = comments(cls)
    rows = ["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |"]
    nested = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = default_of(f)
        shown = "required" if default is dataclasses.MISSING else f"`{toml_value(default)}`"
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            nested.append((f"{prefix}.{f.name}", typing.get_args(tp)[0]))
        rule = allowed(tp, checks.get(f"{prefix}.{f.name}"))
        cells = [f"`{f.name}`", type_name(tp), shown, rule, notes.get(f.name, "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows, nested


def section(title: str, cls: type, prefix: str, checks: dict[str, Any]) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):  # the dataclass's generated signature, no prose
        doc = ""
    rows, nested = table(cls, prefix, checks)
    out = [f"## {title}", "", *([prose(doc.split("\n\n")[0]), ""] if doc else []),
           *rows, ""]
    for key, item in nested:
        out += section(f"`{key}` entries", item, key, checks)
    return out


def reference(config: types.ModuleType) -> str:
    """The whole reference page for a config module with ``Config`` and ``_CHECKS``."""
    checks = getattr(config, "_CHECKS", {})
    hints = typing.get_type_hints(config.Config)
    out = [HEADER]
    for f in dataclasses.fields(config.Config):
        tp = hints[f.name]
        if typing.get_origin(tp) is tuple:  # a list of tables, e.g. [[models]]
            item = typing.get_args(tp)[0]
            singular = f.name.removesuffix("s")
            out += section(f"`[[{f.name}]]` (or `[{singular}]` for one)", item, f.name, checks)
        else:
            out += section(f"`[{f.name}]`", tp, f.name, checks)
    rules = [(name, inspect.getdoc(fn)) for name, fn in vars(config).items()
             if name.startswith("_check_") and callable(fn) and inspect.getdoc(fn)]
    if rules:
        out += ["## Rules across keys", ""]
        out += [f"- {prose(doc)} (`{name}`)" for name, doc in rules]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from job import config

    target = Path(argv[0]) if argv else OUTPUT
    target.write_text(reference(config), encoding="utf-8")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
