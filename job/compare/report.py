"""The comparison written out: ``compare.json`` (everything), ``compare.md`` (readable tables)
and ``compare.html`` (the same tables with the pictures)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from job import rundir


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _overlap(value: dict[str, Any] | None) -> str:
    return "–" if not value else f"{value['overlap']:.3f}"


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each table of the report."""
    runs = [[r["label"], r["family"], f"{r['tokens']:,}", f"{r['keys']:,}",
             _num(r.get("knn_preservation")), r["run_dir"]] for r in result["runs"]]
    pairs = []
    for p in result["pairs"]:
        orig = p["knn_original"]
        pairs.append([p["a"], p["b"], f"{p['shared']:,}", f"{p['share_a']:.1%}",
                      f"{p['share_b']:.1%}", _overlap(orig) if orig else
                      f"– ({p.get('original_error') or 'n/a'})", _overlap(p["knn_map"]),
                      _num((p["knn_map"] or orig or {}).get("chance"), 4),
                      _num(p["procrustes_disparity"])])
    failed = [[f["run_dir"], f["reason"]] for f in result["failed"]]
    anchors = [[a["anchor"], label, " ".join(near) if near else "(not a token)"]
               for a in result["anchors"] for label, near in a["nearest"].items()]
    out = [("Runs", ["model", "family", "tokens", "matchable", "kNN preservation", "run dir"],
            runs),
           ("Pairs", ["A", "B", "shared tokens", "share of A", "share of B",
                      f"{result['k']}-NN overlap, original", f"{result['k']}-NN overlap, map",
                      "chance", "Procrustes disparity"], pairs)]
    if failed:
        out.append(("Failed runs", ["run dir", "reason"], failed))
    if anchors:
        out.append(("Anchor tokens: nearest on each map", ["anchor", "model", "nearest"],
                    anchors))
    return out


_MATCHED = {
    "display": "same display text and same word-start flag (`##ing` = `ing` inside a word;\n"
               "`Ġthe` = `▁the` = `the` at a word start), case kept, specials and byte pieces "
               "left out.",
    "token_id": "the same token id (every run maps one model, e.g. its input and contextual\n"
                "vectors), specials left out.",
}
_NOTES = """\
*shared tokens*: {matched}
*k-NN overlap*: for a sample of shared tokens, the share of their {k} nearest shared tokens
both models agree on, in the original embedding spaces and on the maps; *chance* is what
random neighbours would give. *Procrustes disparity*: 0 = one map is a rotated, reflected,
scaled copy of the other on the shared tokens, 1 = nothing in common.
"""


def _notes(result: dict[str, Any]) -> str:
    return _NOTES.format(k=result["k"], matched=_MATCHED[result.get("matched_by", "display")])


def markdown(result: dict[str, Any]) -> str:
    lines = ["# vocabmap comparison", "",
             f"{len(result['runs'])} runs compared, {len(result['failed'])} failed.", "",
             _notes(result)]
    for title, header, rows in tables(result):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    images = result["images"]
    if images:
        lines += ["## Pictures", ""] + [f"- `{name}`" for name in images] + [""]
    return "\n".join(lines)


def page(result: dict[str, Any]) -> str:
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<title>vocabmap comparison</title><style>",
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
             "img{max-width:100%;border:1px solid #ccc;margin:.5em 0}</style></head><body>",
             "<h1>vocabmap comparison</h1>",
             f"<p>{len(result['runs'])} runs compared, {len(result['failed'])} failed.</p>",
             f"<p>{esc(_notes(result)).replace(chr(10), ' ')}</p>"]
    for title, header, rows in tables(result):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for name in result["images"]:
        parts.append(f"<h2>{esc(name)}</h2><img src='{esc(name)}' alt='{esc(name)}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(result: dict[str, Any], out: Path) -> list[str]:
    """Write the three reports into ``out``; returns their file names."""
    rundir.write_json(out / "compare.json", result)
    rundir.write_text(out / "compare.md", markdown(result))
    rundir.write_text(out / "compare.html", page(result))
    return ["compare.json", "compare.md", "compare.html"]
