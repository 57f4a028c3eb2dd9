"""Write an English text corpus from the Python standard library's docstrings.

A corpus any machine has, for trying the contextual mode offline: one paragraph per line.
Usage: python scripts/stdlib-corpus.py OUT.txt
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import warnings


def paragraphs(obj: object) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    parts = (" ".join(p.split()) for p in re.split(r"\n\s*\n", doc))
    return [p for p in parts if len(p.split()) >= 5 and not p.startswith((">>>", "..."))]


def main(out: str) -> None:
    seen: set[str] = set()
    warnings.simplefilter("ignore")
    with open(out, "w", encoding="utf-8") as handle:
        for info in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
            if info.name.startswith("_") or info.name in ("antigravity", "this", "idlelib"):
                continue
            if str(getattr(info.module_finder, "path", "")).find("site-packages") >= 0:
                continue  # the standard library only
            try:
                module = importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - modules that need a display, a platform, ...
                continue
            members = [module] + [m for _, m in inspect.getmembers(module)
                                  if inspect.isclass(m) or inspect.isfunction(m)]
            for member in members:
                for text in paragraphs(member):
                    if text not in seen:
                        seen.add(text)
                        handle.write(text + "\n")
    print(f"{len(seen)} paragraphs written to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
