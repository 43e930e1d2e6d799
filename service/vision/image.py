"""Image bytes -> the encoder's input, as llama.cpp's mtmd prepares it for a fixed-size projector (gemma3,
mlp):

1. decode (Pillow), 8-bit RGB (an alpha channel is dropped, as stb_image's 3-channel load does);
2. fit into image_size x image_size keeping the aspect ratio: scale = min(S/w, S/h) in float32, the
   scaled size rounded up (at most S), Pillow-compatible resampling (gemma3: bilinear, mlp: bicubic),
   centred (offsets rounded down) on padding of the projector's colour (gemma3: black, mlp: the
   (122, 116, 104) grey of LLaVA's image mean); an image already S x S is used as it is;
3. normalise: (v / 255 - mean[c]) / std[c], channel planes (3, S, S) float32.

Every problem (not an image, truncated, too large: a decompression bomb) is an ImageError.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

MAX_SIDE = 16384  # pixels per side
MAX_PIXELS = 64 * 1024 * 1024  # w * h: beyond this a small file may be a decompression bomb


class ImageError(ValueError):
    """Bytes that are not a usable image."""


def decode_rgb(data: bytes) -> np.ndarray:
    """uint8 (h, w, 3) pixels of an encoded image."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS or w < 1 or h < 1:
                raise ImageError(f"image of {w}x{h} pixels is too large (at most {MAX_SIDE} per side, "
                                 f"{MAX_PIXELS} in all)")
            img.load()
            if img.mode != "RGB":
                img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "LA", "PA") else img.convert("RGB")
            return np.asarray(img, np.uint8)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for bad input
        if "DecompressionBomb" in type(e).__name__:
            raise ImageError(f"image is too large (at most {MAX_PIXELS} pixels): {e}") from None
        raise ImageError(f"cannot decode the image: {type(e).__name__}") from None


def fit_square(px: np.ndarray, size: int, resample: str = "bilinear",
               fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """uint8 (size, size, 3): px (h, w, 3) scaled to fit (resample: "bilinear" or "bicubic", aspect kept),
    centred on the colour fill."""
    from PIL import Image

    h, w = px.shape[:2]
    if (h, w) == (size, size):
        return px
    s = np.float32(min(np.float32(size) / np.float32(w), np.float32(size) / np.float32(h)))
    nw = min(int(math.ceil(np.float32(w) * s)), size)
    nh = min(int(math.ceil(np.float32(h) * s)), size)
    algo = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[resample]
    small = np.asarray(Image.fromarray(px, "RGB").resize((nw, nh), algo), np.uint8)
    out = np.empty((size, size, 3), np.uint8)
    out[:] = np.asarray(fill, np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    out[oy:oy + nh, ox:ox + nw] = small
    return out


def normalize(px: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """float32 (3, h, w) = (px / 255 - mean) / std per channel, from uint8 (h, w, 3)."""
    x = px.astype(np.float32) / np.float32(255.0)
    x = (x - mean.astype(np.float32)) / std.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(data: bytes, size: int, mean: np.ndarray, std: np.ndarray, resample: str = "bilinear",
               fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """The encoder input (3, size, size) float32 of an encoded image."""
    return normalize(fit_square(decode_rgb(data), size, resample, fill), mean, std)
