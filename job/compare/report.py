"""The comparison written out: ``compare.json`` (everything), ``compare.md`` (readable tables)
and ``compare.html`` (the same tables with the pictures)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from job import rundir


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def short(scores: list[dict[str, Any]] | None) -> str:
    """``0.434 (calibrated 0.43)``, for a log line."""
    if not scores:
        return "–"
    return f"{scores[0]['observed']:.3f} (calibrated {scores[0]['calibrated']:.3f})"


def _null(score: dict[str, Any] | None) -> list[str]:
    if not score:
        return ["–", "–"]
    return [f"{score['null_mean']:.4f} ± {score['null_std']:.4f}", f"{score['calibrated']:.3f}"]


def _agreement(result: dict[str, Any], space: str) -> list[list[str]]:
    rows = []
    for p in result["pairs"]:
        scores = p[space] or []
        by = {s["null"]: s for s in scores}
        if not scores:
            why = p.get("original_error") or "n/a"
            rows.append([p["a"], p["b"], f"{p['measured']:,}", f"– ({why})", "–", "–", "–",
                         "–", "–"])
            continue
        uniform, within = by.get("uniform"), by.get("category")
        rows.append([p["a"], p["b"], f"{p['measured']:,}", f"{scores[0]['observed']:.3f}",
                     *_null(uniform), *_null(within),
                     f"{(uniform or scores[0])['p_value']:.3f}"])
    return rows


def _moved(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    for p in result["pairs"]:
        for kind, what in (("changed", "Most changed"), ("stable", "Most stable")):
            rows = [[t["token"], f"{t['agreement']:.2f}", " ".join(t["a"]), " ".join(t["b"])]
                    for t in p.get(kind, [])]
            if rows:
                out.append((f"{what} tokens: {p['a']} vs {p['b']} ({p['table']})",
                            ["token", "agreement", f"neighbours in {p['a']}",
                             f"neighbours in {p['b']}"], rows))
    return out


def _aligned(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in result.get("aligned", [])[1:]:
        if "error" in a:
            rows.append([a["label"], "–", "–", "–", "–", "–", a["error"]])
            continue
        ind, ali = a["knn_preservation_independent"], a["knn_preservation_aligned"]
        rows.append([a["label"], f"{a['tokens']:,}", f"{a['seconds']:.1f}"
                     + (" (stored)" if a.get("reused") else ""), f"{ind:.3f}", f"{ali:.3f}",
                     f"{ind - ali:+.3f}", _num(a.get("disparity_to_first"))])
    return rows


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each table of the report."""
    runs = [[r["label"], r["family"], f"{r['tokens']:,}", f"{r['keys']:,}",
             _num(r.get("knn_preservation")), r["run_dir"]] for r in result["runs"]]
    pairs = [[p["a"], p["b"], f"{p['shared']:,}", f"{p['share_a']:.1%}", f"{p['share_b']:.1%}",
              _num(p["procrustes_disparity"])] for p in result["pairs"]]
    k = result["k"]
    head = ["A", "B", "tokens", f"{k}-NN agreement", "null: shuffled tokens (mean ± sd)",
            "calibrated", "null: shuffled within category", "calibrated (category)",
            "p-value"]
    out = [("Runs", ["model", "family", "tokens", "matchable", "kNN preservation", "run dir"],
            runs),
           ("Pairs", ["A", "B", "shared tokens", "share of A", "share of B",
                      "Procrustes disparity"], pairs),
           ("Agreement in the original spaces", head, _agreement(result, "original")),
           ("Agreement on the maps", head, _agreement(result, "map"))]
    out += _moved(result)
    aligned = _aligned(result)
    if aligned:
        out.append(("Aligned maps (laid out from the first map)",
                    ["model", "tokens", "seconds", "kNN preservation, independent",
                     "aligned", "loss", "disparity to first"], aligned))
    failed = [[f["run_dir"], f["reason"]] for f in result["failed"]]
    if failed:
        out.append(("Failed runs", ["run dir", "reason"], failed))
    anchors = [[a["anchor"], label, " ".join(near) if near else "(not a token)"]
               for a in result["anchors"] for label, near in a["nearest"].items()]
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
*{k}-NN agreement*: for every shared token, the share of its {k} nearest shared tokens both
models agree on (mutual k-NN), averaged; in the original embedding spaces and on the maps.
*null*: the same score after shuffling which token of B is paired with which token of A
({perms} shuffles; *within category*: numbers only with numbers, words with words, ...), i.e.
what two unrelated spaces of these very shapes reach. *calibrated*: 0 up to the null's
{q:g} % quantile, 1 for identical neighbourhoods, (observed − quantile) / (1 − quantile)
between. *Procrustes disparity*: 0 = one map is a rotated, scaled copy of the other,
1 = nothing in common; large even for related models, as t-SNE keeps no global placement.
"""


def _notes(result: dict[str, Any]) -> str:
    cfg = result["config"]
    return _NOTES.format(k=result["k"], matched=_MATCHED[result.get("matched_by", "display")],
                         perms=cfg["permutations"], q=100 * (1 - cfg["alpha"]))


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
