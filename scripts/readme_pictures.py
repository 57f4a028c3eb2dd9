"""Make the front page's pictures from a finished run of the embedded default (`make run`).

Writes docs/images/overview.png (the whole map) and docs/images/zoom.png (one labelled zoom),
downscaled and reduced to a palette so each stays well under 300 KB.

Usage: python scripts/readme_pictures.py [RUN_DIR] [--zoom NAME]
(default: the newest runs/all-MiniLM-L6-v2-* directory and its "japan" zoom)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
WIDTH = 800  # pixels across, each picture; the front page shows them side by side
LIMIT = 300_000  # bytes


def newest_run() -> Path:
    runs = sorted((ROOT / "runs").glob("all-MiniLM-L6-v2-*/overview.png"),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        sys.exit("readme_pictures: no finished run of the embedded default under runs/; "
                 "run `make run` first, or pass a run directory")
    return runs[-1].parent


def shrink(source: Path, target: Path, width: int = WIDTH) -> int:
    """``source`` scaled to ``width`` pixels across, as a 256-colour PNG (octree keeps the
    legend's rare colours, which median cut merged); its size in bytes."""
    with Image.open(source) as picture:
        rgb = picture.convert("RGB")
    height = round(rgb.height * width / rgb.width)
    small = rgb.resize((width, height), Image.Resampling.LANCZOS)
    small.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        target, optimize=True)
    size = target.stat().st_size
    if size >= LIMIT:
        sys.exit(f"readme_pictures: {target} is {size:,} bytes, over {LIMIT:,}; lower WIDTH")
    return size


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run of the embedded default")
    parser.add_argument("--zoom", default="japan", help="the zoom to show (zoom_NAME.png)")
    args = parser.parse_args(argv)
    folder = args.run_dir or newest_run()
    zoom = folder / f"zoom_{args.zoom}.png"
    if not zoom.is_file():
        found = sorted(p.stem.removeprefix("zoom_") for p in folder.glob("zoom_*.png"))
        sys.exit(f"readme_pictures: {folder} has no {zoom.name}; choose one of: "
                 + ", ".join(found))
    IMAGES.mkdir(parents=True, exist_ok=True)
    for source, name in ((folder / "overview.png", "overview.png"), (zoom, "zoom.png")):
        size = shrink(source, IMAGES / name)
        print(f"{IMAGES / name}: {size:,} bytes (from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
