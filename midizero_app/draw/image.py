"""Image files → a darkness map (what was drawn, and how dark).

PNG, JPEG and anything else Pillow reads. Transparency is composited onto white (a
drawing on a transparent background keeps its strokes); a light drawing on a dark
background is inverted; huge images are decoded or scaled down to :data:`MAX_SIDE` pixels.
Every failure is a :class:`DrawError` with one line a user can read.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import MidizeroError

MAX_SIDE = 2048             # pixels: larger images are scaled down (the roll is far coarser)
MAX_PIXELS = 400_000_000    # refuse to decode anything bigger (memory)
MAX_FILE_BYTES = 256 << 20  # refuse larger files outright


class DrawError(MidizeroError, ValueError):
    """A drawing or image that cannot be used; the message is shown to the user."""


def load_image(source: str | Path | bytes) -> np.ndarray:
    """Read an image file as darkness.

    Parameters
    ----------
    source : a path, or the file's bytes.

    Returns
    -------
    darkness : float32 (H, W) in [0, 1]; 0 is paper, 1 is full ink. H, W ≤ :data:`MAX_SIDE`.

    Raises
    ------
    DrawError : missing, empty, corrupt, unsupported, too large, or blank.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = "image" if isinstance(source, (bytes, bytearray)) else Path(source).name
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise DrawError(f"{name}: no such file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DrawError(f"{name}: the file is too large ({size >> 20} MB; "
                            f"the limit is {MAX_FILE_BYTES >> 20} MB)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DrawError(f"{name}: cannot read the file ({exc.strerror})") from None
    if not data:
        raise DrawError(f"{name}: the file is empty")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # Pillow refuses 2× this: our hard limit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data)).verify()  # chunk checksums (PNG) before decoding
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w < 1 or h < 1:
                raise DrawError(f"{name}: the image is empty (0 pixels)")
            if img.format == "JPEG" and max(w, h) > MAX_SIDE:
                img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode at a reduced scale
            img.load()
            img = ImageOps.exif_transpose(img)  # phone photos: as the camera was held
            img = _flatten(img)
            if max(img.size) > MAX_SIDE:
                img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    except DrawError:
        raise
    except Image.DecompressionBombError:
        raise DrawError(f"{name}: the image is too large to open "
                        f"(over {MAX_PIXELS // 1_000_000} million pixels)") from None
    except (UnidentifiedImageError, SyntaxError):
        raise DrawError(f"{name}: not an image that can be read "
                        "(corrupt, or not PNG/JPEG/GIF/BMP/WebP/TIFF)") from None
    except (OSError, ValueError, MemoryError) as exc:
        raise DrawError(f"{name}: the image is damaged or incomplete "
                        f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
                        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    dark = np.asarray(img, np.float32) / 255.0
    if dark.max() - dark.min() < 0.02:
        raise DrawError(f"{name}: nothing is drawn in the image (it is one flat colour)")
    return dark


def _flatten(img):
    """Any mode → 'L' darkness (255 = ink): alpha onto white, dark backgrounds inverted."""
    from PIL import Image

    if img.mode not in ("L", "RGB"):
        img = img.convert("RGBA")
    lum = np.asarray(img.convert("L"), np.float32) / 255.0
    if img.mode == "RGBA":
        alpha = np.asarray(img.getchannel("A"), np.float32) / 255.0
        dark = alpha * (1.0 - lum)
        if alpha.min() < 0.98 and dark.max() < 0.1 and alpha.max() - alpha.min() > 0.1:
            dark = alpha  # light strokes on a transparent background: the shape is the alpha
    else:
        dark = 1.0 - lum
    # Paper is the most common tone; a dark page (white chalk on a board) is inverted.
    if np.median(dark) > 0.5:
        dark = 1.0 - dark
    return Image.fromarray(np.round(dark * 255).astype(np.uint8), "L")
