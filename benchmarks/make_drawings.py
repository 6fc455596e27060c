"""Make the benchmark's test drawings (regenerable; seeded).

    python -m benchmarks.make_drawings [--out benchmarks/.cache/drawings] [--sets N] [--no-canvas]

PNG pictures drawn with Pillow — lines, zigzags, waves, circles, hearts, spirals and words
in DejaVu fonts, several of each with seeded sizes, positions and pen widths — and a few
freehand strokes drawn with the mouse on the Draw tab's canvas (offscreen Qt, real mouse
events) saved as ``.npz`` rolls (``ink``: float32 (T, 88)). ``--sets N`` makes N such sets,
each from its own seed (set 0 is the original 37 drawings), for more independent drawings.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / ".cache" / "drawings"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
             Path("/Library/Fonts"), Path("C:/Windows/Fonts"))
WORDS = ("Hello", "MIDI", "music", "Zero", "love", "piano", "Bach", "dream", "song", "Anna",
         "tune", "Chopin", "waltz", "Hi!", "joy", "sky", "rain", "Mozart", "star", "moon",
         "Liszt", "blue", "play", "notes")
SIZE = (800, 400)


def _font(name: str, size: int):
    from PIL import ImageFont

    for d in FONT_DIRS:
        if (d / name).is_file():
            return ImageFont.truetype(str(d / name), size)
    return ImageFont.load_default(size)


def _canvas():
    from PIL import Image, ImageDraw

    img = Image.new("L", SIZE, 255)
    return img, ImageDraw.Draw(img)


def _poly(draw, pts, width: int, fill: int = 0) -> None:
    draw.line([(float(x), float(y)) for x, y in pts], fill=fill, width=width, joint="curve")


def shapes(rng: np.random.Generator, words: tuple[str, ...] = WORDS[:8]):
    """Yield (name, PIL image) for every picture."""
    W, H = SIZE
    for i in range(4):  # straight lines
        img, d = _canvas()
        y0, y1 = rng.uniform(40, H - 40, 2)
        _poly(d, [(30, y0), (W - 30, y1)], int(rng.integers(3, 12)))
        if i == 3:
            _poly(d, [(30, y0 + 90 if y0 < H / 2 else y0 - 90), (W - 30, y1)], 6)
        yield f"line_{i}", img
    for i in range(4):  # zigzags
        img, d = _canvas()
        n = int(rng.integers(3, 9))
        amp = rng.uniform(60, 170)
        xs = np.linspace(30, W - 30, 2 * n + 1)
        ys = H / 2 + amp * np.where(np.arange(len(xs)) % 2, 1, -1) + rng.normal(0, 8, len(xs))
        _poly(d, zip(xs, ys), int(rng.integers(3, 12)))
        yield f"zigzag_{i}", img
    for i in range(3):  # waves
        img, d = _canvas()
        xs = np.linspace(30, W - 30, 400)
        f, amp = rng.uniform(1.0, 4.0), rng.uniform(50, 160)
        _poly(d, zip(xs, H / 2 + amp * np.sin(xs / W * 2 * math.pi * f)), int(rng.integers(3, 10)))
        yield f"wave_{i}", img
    for i in range(4):  # circles and ellipses
        img, d = _canvas()
        cx, cy = rng.uniform(250, W - 250), H / 2 + rng.uniform(-30, 30)
        rx, ry = rng.uniform(120, 240), rng.uniform(90, 170)
        if i == 3:  # two circles
            d.ellipse((cx - 200 - 90, cy - 90, cx - 200 + 90, cy + 90), outline=0, width=6)
            d.ellipse((cx + 200 - 90, cy - 90, cx + 200 + 90, cy + 90), outline=0, width=6)
        else:
            d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), outline=0,
                      width=int(rng.integers(4, 12)))
        yield f"circle_{i}", img
    for i in range(3):  # hearts (outline; the last one filled)
        img, d = _canvas()
        t = np.linspace(0, 2 * math.pi, 300)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        s = rng.uniform(8, 11)
        pts = list(zip(W / 2 + s * x, H / 2 - s * y))
        if i == 2:
            d.polygon(pts, fill=0)
        else:
            _poly(d, pts, int(rng.integers(4, 12)))
        yield f"heart_{i}", img
    for i in range(3):  # spirals
        img, d = _canvas()
        turns = rng.uniform(2.0, 4.0)
        t = np.linspace(0, 2 * math.pi * turns, 800)
        r = t / t[-1] * rng.uniform(150, 190)
        _poly(d, zip(W / 2 + 1.8 * r * np.cos(t), H / 2 + r * np.sin(t)), int(rng.integers(3, 8)))
        yield f"spiral_{i}", img
    fonts = ("DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSansMono.ttf")
    for i, word in enumerate(words):  # words
        img, d = _canvas()
        font = _font(fonts[i % len(fonts)], 150 if len(word) <= 6 else 120)
        box = d.textbbox((0, 0), word, font=font)
        d.text(((W - (box[2] - box[0])) / 2 - box[0], (H - (box[3] - box[1])) / 2 - box[1]),
               word, font=font, fill=0)
        yield f"word_{word}", img
    for i in range(2):  # a photo-like picture: grey strokes on a textured page, as JPEG
        img, d = _canvas()
        arr = np.asarray(img, np.float32) - rng.uniform(0, 25, (SIZE[1], SIZE[0]))
        from PIL import Image

        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        d2 = __import__("PIL.ImageDraw", fromlist=["Draw"]).Draw(img)
        xs = np.linspace(40, W - 40, 300)
        _poly(d2, zip(xs, H / 2 + 120 * np.sin(xs / 90) * np.cos(xs / 300)), 9, fill=70)
        yield f"photo_{i}.jpg", img


def canvas_strokes(out: Path, rng: np.random.Generator, n: int = 6, tag: str = "") -> list[Path]:
    """Freehand strokes drawn with real mouse events on the Draw tab's canvas, saved."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from midizero_app.gui.draw_canvas import DrawCanvas, drag

    app = QApplication.instance() or QApplication([])
    paths = []
    for i in range(n):
        c = DrawCanvas(bars=8)
        c.resize(1000, 560)
        c.show()
        app.processEvents()
        for _stroke in range(int(rng.integers(1, 4))):
            # a hand-like stroke: a smooth random walk across part of the roll
            steps = int(rng.integers(30, 120))
            t0 = rng.uniform(0, c.n_steps - steps)
            pitch = rng.uniform(45, 85)
            vel = 0.0
            pts = []
            for k in range(steps):
                vel = 0.8 * vel + rng.normal(0, 0.9)
                pitch = float(np.clip(pitch + vel, 30, 100))
                pts.append((t0 + k, pitch))
            c.pen_width = int(rng.integers(1, 4))
            drag(c, pts)
        path = out / f"canvas_{i}{tag}.npz"
        np.savez_compressed(path, ink=c.drawing().ink)
        paths.append(path)
        c.close()
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--sets", type=int, default=1, help="seeded sets of 37 drawings (default 1)")
    ap.add_argument("--no-canvas", action="store_true", help="skip the Qt canvas strokes")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for k in range(args.sets):
        rng = np.random.default_rng(11 if k == 0 else 1000 + k)
        words = WORDS[:8] if k == 0 else tuple(rng.choice(WORDS, 8, replace=False))
        tag = "" if k == 0 else f"-s{k}"
        for name, img in shapes(rng, words):
            stem, dot, ext = name.partition(".")
            path = out / (stem + tag + "." + (ext if dot else "png"))
            img.save(path, quality=85) if ext == "jpg" else img.save(path)
            n += 1
        if not args.no_canvas:
            n += len(canvas_strokes(out, rng, tag=tag))
    print(f"{n} drawings in {out}")


if __name__ == "__main__":
    main()
