"""Make the small placeholder pictures that ship with an issue's content.

The pictures are calm brand-coloured gradients with a simple geometric motif,
written as PNG with only the standard library (zlib + struct), so anyone can
regenerate them without extra packages and without the network:

    python tools/make_placeholder_images.py            # writes content/issue-30/images/
    python tools/make_placeholder_images.py OUT_DIR    # writes somewhere else

The output is deterministic: the same script always writes the same bytes.

The pictures only decorate: they show nothing a reader needs. The content files
that use them say `decorative: true` (no `alt:`), so the email gives them
alt="" and screen readers skip them. A real photograph gets an `alt:` saying
what it shows.
"""

from __future__ import annotations

import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

Colour = tuple[int, int, int]

TEAL: Colour = (0x00, 0x85, 0x7C)
NAVY: Colour = (0x1B, 0x3A, 0x5C)
LIGHT: Colour = (0xE8, 0xF3, 0xF2)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "content" / "issue-30" / "images"


@dataclass(frozen=True)
class Circle:
    """A filled disc (or a ring when `thickness` is set), centre and radius as fractions of the height."""

    cx: float
    cy: float
    r: float
    colour: Colour
    thickness: float = 0.0


@dataclass(frozen=True)
class Bar:
    """A filled rectangle, all values as fractions of width (x, w) and height (y, h)."""

    x: float
    y: float
    w: float
    h: float
    colour: Colour


@dataclass(frozen=True)
class Picture:
    name: str
    width: int
    height: int
    top: Colour
    bottom: Colour
    shapes: tuple[Circle | Bar, ...]


def mix(a: Colour, b: Colour, t: float) -> Colour:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def pixel_rows(picture: Picture) -> list[bytes]:
    """Vertical gradient from `top` to `bottom`, with the shapes painted over it."""
    w, h = picture.width, picture.height
    rows = []
    for y in range(h):
        base = mix(picture.top, picture.bottom, y / max(h - 1, 1))
        row = [base] * w
        for shape in picture.shapes:
            if isinstance(shape, Bar):
                y0, y1 = int(shape.y * h), int((shape.y + shape.h) * h)
                if y0 <= y < y1:
                    x0, x1 = int(shape.x * w), int((shape.x + shape.w) * w)
                    for x in range(max(x0, 0), min(x1, w)):
                        row[x] = shape.colour
            else:
                cx, cy, r = shape.cx * w, shape.cy * h, shape.r * h
                dy = y + 0.5 - cy
                if abs(dy) >= r:
                    continue
                half = (r * r - dy * dy) ** 0.5
                inner = r - shape.thickness * h if shape.thickness else 0.0
                inner_half = (inner * inner - dy * dy) ** 0.5 if abs(dy) < inner else 0.0
                for x in range(max(int(cx - half), 0), min(int(cx + half) + 1, w)):
                    if inner_half and abs(x + 0.5 - cx) < inner_half:
                        continue
                    row[x] = shape.colour
        rows.append(bytes(channel for rgb in row for channel in rgb))
    return rows


def png_bytes(width: int, height: int, rows: list[bytes]) -> bytes:
    """Encode 8-bit RGB rows as PNG, using the Up filter so repeated rows compress to almost nothing."""
    raw = bytearray()
    previous = bytes(width * 3)
    for row in rows:
        raw.append(2)  # filter type: Up
        raw.extend((c - p) & 0xFF for c, p in zip(row, previous))
        previous = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


SOFT_TEAL = mix(TEAL, LIGHT, 0.55)
SOFT_NAVY = mix(NAVY, LIGHT, 0.35)

PICTURES = (
    Picture("cover-sao-paulo", 1200, 600, NAVY, TEAL, (
        Circle(0.78, 0.42, 0.30, SOFT_TEAL),
        Circle(0.78, 0.42, 0.40, LIGHT, thickness=0.02),
        Bar(0.08, 0.62, 0.05, 0.38, SOFT_NAVY),
        Bar(0.15, 0.48, 0.06, 0.52, SOFT_NAVY),
        Bar(0.23, 0.70, 0.04, 0.30, SOFT_NAVY),
        Bar(0.29, 0.55, 0.05, 0.45, SOFT_NAVY),
        Bar(0.36, 0.74, 0.05, 0.26, SOFT_NAVY),
    )),
    Picture("smart-city-champions", 600, 300, TEAL, NAVY, (
        Circle(0.30, 0.50, 0.22, LIGHT),
        Circle(0.50, 0.50, 0.22, SOFT_TEAL),
        Circle(0.70, 0.50, 0.22, LIGHT),
    )),
    Picture("lascn-webinar", 600, 300, NAVY, TEAL, (
        Bar(0.25, 0.22, 0.50, 0.50, LIGHT),
        Bar(0.28, 0.27, 0.44, 0.40, SOFT_TEAL),
        Bar(0.45, 0.72, 0.10, 0.08, LIGHT),
    )),
    Picture("secretariat-activities", 600, 300, LIGHT, SOFT_TEAL, (
        Circle(0.25, 0.50, 0.18, TEAL),
        Circle(0.50, 0.50, 0.18, NAVY),
        Circle(0.75, 0.50, 0.18, TEAL),
        Bar(0.25, 0.48, 0.50, 0.04, NAVY),
    )),
    Picture("member-cuenca", 600, 300, TEAL, SOFT_TEAL, (
        Circle(0.50, 0.50, 0.30, LIGHT, thickness=0.05),
        Circle(0.50, 0.50, 0.10, NAVY),
    )),
    Picture("member-ningbo", 600, 300, NAVY, SOFT_NAVY, (
        Circle(0.50, 0.50, 0.30, LIGHT, thickness=0.05),
        Circle(0.50, 0.50, 0.10, TEAL),
    )),
    Picture("trend-local-tourism", 600, 300, SOFT_TEAL, TEAL, (
        Circle(0.35, 0.45, 0.16, NAVY),
        Circle(0.65, 0.55, 0.16, LIGHT),
    )),
    Picture("trend-urban-resilience", 600, 300, SOFT_NAVY, NAVY, (
        Bar(0.30, 0.55, 0.08, 0.25, LIGHT),
        Bar(0.42, 0.40, 0.08, 0.40, SOFT_TEAL),
        Bar(0.54, 0.30, 0.08, 0.50, LIGHT),
        Bar(0.66, 0.20, 0.08, 0.60, SOFT_TEAL),
    )),
    Picture("trend-energy-usage", 600, 300, TEAL, NAVY, (
        Circle(0.50, 0.45, 0.20, LIGHT),
        Bar(0.46, 0.62, 0.08, 0.16, SOFT_TEAL),
    )),
)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    for picture in PICTURES:
        path = out / f"{picture.name}.png"
        path.write_bytes(png_bytes(picture.width, picture.height, pixel_rows(picture)))
        print(f"{path}  {picture.width}x{picture.height}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
