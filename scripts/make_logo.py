"""Draw the book's logo and favicon from one geometry: the lab's spiral (1.5 turns, as ``labcode.spiral_curve``)
winding out of the standard normal's contours, on the palette's blue.

Usage: .venv/bin/python scripts/make_logo.py [--check]

Writes ``_static/logo.svg`` (the sidebar's logo) and ``_static/favicon.ico`` (16-64 px, drawn with Pillow;
``html_favicon`` links it from every page and ``html_extra_path`` copies it to the site root, where browsers
ask for ``/favicon.ico``).
With --check nothing is written; the exit status is 1 if either file differs from what this script draws.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "_static" / "logo.svg"
ICO = ROOT / "_static" / "favicon.ico"

SIZE = 64                     # the drawing's units: a 64 x 64 square
BACKGROUND = "#0072B2"        # labcode.plots.style.COLORS["p"]
CONTOUR = "#59A3CD"           # the prior's contours: white at 35 % over the blue
SPIRAL = "#FFFFFF"
END = "#E69F00"               # COLORS["accent"]: the spiral's outer end
CONTOUR_RADII = (11.0, 21.0)
SPIRAL_RADIUS = 23.0          # the outer end's distance from the centre
TURNS = 1.5
STROKE = 4.6
ICON_SIZES = (16, 24, 32, 48, 64)


def spiral_points(n: int = 120) -> list[tuple[float, float]]:
    """The noise-free spiral (tau cos tau, tau sin tau), tau in [0, 3 pi], scaled into the square (y up)."""
    top = 2 * math.pi * TURNS
    scale = SPIRAL_RADIUS / top
    pts = []
    for i in range(n):
        tau = top * i / (n - 1)
        pts.append((SIZE / 2 + scale * tau * math.cos(tau), SIZE / 2 - scale * tau * math.sin(tau)))
    return pts


def svg() -> str:
    pts = spiral_points()
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.2f} {y:.2f}" for i, (x, y) in enumerate(pts))
    circles = "\n".join(f'  <circle cx="32" cy="32" r="{r:g}" fill="none" stroke="{CONTOUR}" stroke-width="1.6"/>' for r in CONTOUR_RADII)
    ex, ey = pts[-1]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE} {SIZE}" width="{SIZE}" height="{SIZE}" '
            f'role="img" aria-label="Mathematical Foundations of Generative Models">\n'
            f'  <rect x="1" y="1" width="62" height="62" rx="14" fill="{BACKGROUND}"/>\n'
            f'{circles}\n'
            f'  <path d="{path}" fill="none" stroke="{SPIRAL}" stroke-width="{STROKE}" stroke-linecap="round" '
            f'stroke-linejoin="round"/>\n'
            f'  <circle cx="{ex:.2f}" cy="{ey:.2f}" r="4.4" fill="{END}"/>\n'
            f'</svg>\n')


def raster(px: int) -> Image.Image:
    """The same drawing with Pillow, 4x supersampled then reduced to ``px`` square."""
    k = 4 * px / SIZE
    im = Image.new("RGBA", (4 * px, 4 * px), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([1 * k, 1 * k, 63 * k, 63 * k], radius=14 * k, fill=BACKGROUND)
    for r in CONTOUR_RADII:
        d.ellipse([(32 - r) * k, (32 - r) * k, (32 + r) * k, (32 + r) * k], outline=CONTOUR, width=round(1.6 * k))
    pts = [(x * k, y * k) for x, y in spiral_points()]
    width = round(STROKE * k)
    d.line(pts, fill=SPIRAL, width=width, joint="curve")
    for x, y in (pts[0], pts[-1]):   # round caps
        d.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=SPIRAL)
    ex, ey = pts[-1]
    d.ellipse([ex - 4.4 * k, ey - 4.4 * k, ex + 4.4 * k, ey + 4.4 * k], fill=END)
    return im.resize((px, px), Image.LANCZOS)


def ico() -> bytes:
    out = io.BytesIO()
    big = raster(max(ICON_SIZES))
    big.save(out, format="ICO", sizes=[(s, s) for s in ICON_SIZES],
             append_images=[raster(s) for s in ICON_SIZES if s != max(ICON_SIZES)])
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args()
    wanted = {SVG: svg().encode(), ICO: ico()}
    stale = [p for p, data in wanted.items() if not p.exists() or p.read_bytes() != data]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)} (run {sys.executable} {ROOT / 'scripts' / 'make_logo.py'})")
        return 1 if stale else 0
    for p, data in wanted.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
