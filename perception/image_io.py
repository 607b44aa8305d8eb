"""Read part images from files for inspection, with one-line errors for bad files.

Pillow reads the header first; the pixel count is checked before anything is decoded, so a
50-megapixel file (or a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from environments.errors import ShopfloorInputError

MAX_MEGAPIXELS = 25.0  # a 24 MP inspection camera still fits
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM", "GIF")


def load_image(path: str | os.PathLike, max_megapixels: float = MAX_MEGAPIXELS) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3). Raises ShopfloorInputError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ShopfloorInputError(f"{path}: no such file; allowed: an image file ({', '.join(FORMATS)}).")
    if path.stat().st_size == 0:
        raise ShopfloorInputError(f"{path}: the file is empty; allowed: an image file ({', '.join(FORMATS)}).")
    try:
        with Image.open(path) as im:
            if im.format not in FORMATS:
                raise ShopfloorInputError(f"{path}: format {im.format} is not supported; allowed: {', '.join(FORMATS)}.")
            megapixels = im.width * im.height / 1e6
            if megapixels > max_megapixels:
                raise ShopfloorInputError(f"{path}: the image is {im.width}x{im.height} ({megapixels:.1f} megapixels); "
                                          f"allowed: at most {max_megapixels:g} megapixels.")
            if im.width < 8 or im.height < 8:
                raise ShopfloorInputError(f"{path}: the image is {im.width}x{im.height}; allowed: at least 8x8 pixels.")
            im.load()
            rgb = im.convert("RGB")
    except ShopfloorInputError:
        raise
    except UnidentifiedImageError:
        raise ShopfloorInputError(f"{path}: not an image; allowed: an image file ({', '.join(FORMATS)}).") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ShopfloorInputError(f"{path}: the image is corrupt or truncated ({str(e).splitlines()[0][:80]}); "
                                  f"allowed: a complete image file.") from None
    return np.asarray(rgb, dtype=np.uint8)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` x ``size`` (antialiased), as the camera frames a part."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
