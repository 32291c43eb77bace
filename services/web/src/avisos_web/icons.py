"""The app's icons as PNG files, drawn with plain Python (zlib + struct, no imaging library).

Run ``python -m avisos_web.icons`` to regenerate ``static/icons/``; the files are committed.
The drawing is a white bell on a blue rounded square; the maskable variant fills the whole
square and keeps the bell inside the 80 % safe zone, as the maskable-icon spec asks.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

from avisos_web.settings import STATIC_DIR

BRAND_RGB = (29, 78, 216)  # #1d4ed8, white on it has 6.7:1 contrast
ACCENT_RGB = (245, 158, 11)  # #f59e0b, the unread dot
SUPERSAMPLE = 3


def png_bytes(width: int, height: int, rgba: bytes) -> bytes:
    """Encode 8-bit RGBA pixels (row-major, ``width*height*4`` bytes) as a PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    stride = width * 4
    raw = b"".join(b"\x00" + rgba[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _in_bell(x: float, y: float) -> bool:
    """The bell in unit coordinates (0..1, centred at 0.5)."""
    cx = 0.5
    # Dome: a circle on top of a flaring body.
    if (x - cx) ** 2 + (y - 0.40) ** 2 <= 0.20**2 and y <= 0.45:
        return True
    if 0.40 <= y <= 0.66:
        t = (y - 0.40) / 0.26
        half = 0.20 + 0.10 * t**2
        return abs(x - cx) <= half
    if 0.66 < y <= 0.72:  # the lip
        return abs(x - cx) <= 0.32
    if (x - cx) ** 2 + (y - 0.77) ** 2 <= 0.075**2:  # clapper
        return True
    return (x - cx) ** 2 + (y - 0.19) ** 2 <= 0.045**2  # the loop on top


def _in_rounded_square(x: float, y: float, radius: float) -> bool:
    dx = max(radius - x, 0.0, x - (1 - radius))
    dy = max(radius - y, 0.0, y - (1 - radius))
    return dx * dx + dy * dy <= radius * radius


def draw(size: int, *, maskable: bool) -> bytes:
    """RGBA pixels of the icon at ``size`` px."""
    out = bytearray(size * size * 4)
    scale = 0.72 if maskable else 0.86  # bell size relative to the square
    radius = 0.0 if maskable else 0.18
    n = SUPERSAMPLE
    for py in range(size):
        for px in range(size):
            bg = fg = dot = 0
            for sy in range(n):
                for sx in range(n):
                    x = (px + (sx + 0.5) / n) / size
                    y = (py + (sy + 0.5) / n) / size
                    if not _in_rounded_square(x, y, radius):
                        continue
                    bg += 1
                    bx = 0.5 + (x - 0.5) / scale
                    by = 0.5 + (y - 0.5) / scale
                    if math.hypot(bx - 0.72, by - 0.30) <= 0.09:
                        dot += 1
                    elif _in_bell(bx, by):
                        fg += 1
            total = n * n
            i = (py * size + px) * 4
            if bg == 0:
                continue
            r = (BRAND_RGB[0] * (bg - fg - dot) + 255 * fg + ACCENT_RGB[0] * dot) / bg
            g = (BRAND_RGB[1] * (bg - fg - dot) + 255 * fg + ACCENT_RGB[1] * dot) / bg
            b = (BRAND_RGB[2] * (bg - fg - dot) + 255 * fg + ACCENT_RGB[2] * dot) / bg
            out[i : i + 4] = bytes((round(r), round(g), round(b), round(255 * bg / total)))
    return bytes(out)


ICONS = {
    "icon-192.png": (192, False),
    "icon-512.png": (512, False),
    "maskable-512.png": (512, True),
    "apple-touch-icon.png": (180, True),
    "badge-72.png": (72, False),
}


def write_icons(directory: Path = STATIC_DIR / "icons") -> list[Path]:
    """Write every icon of :data:`ICONS` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (size, maskable) in ICONS.items():
        path = directory / name
        path.write_bytes(png_bytes(size, size, draw(size, maskable=maskable)))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_icons():
        print(p)
