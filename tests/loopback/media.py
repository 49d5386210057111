"""Real media bodies for loopback servers: PNG, MP4 and WAV that decode."""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import subprocess
import tempfile
import wave
import zlib
from pathlib import Path

from PIL import Image


def _colour(seed: str) -> tuple[int, int, int]:
    d = hashlib.sha256(seed.encode()).digest()
    return d[0], d[1], d[2]


def png(width: int, height: int, seed: str = "") -> bytes:
    """A real PNG of `width` x `height`, its colour a function of `seed`."""
    img = Image.new("RGB", (max(1, width), max(1, height)), _colour(seed))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def mp4(width: int, height: int, seconds: float, fps: int = 24, seed: str = "") -> bytes:
    """A real H.264 MP4 of `seconds` (ffmpeg from imageio-ffmpeg)."""
    import imageio_ffmpeg

    r, g, b = _colour(seed)
    width, height = max(2, width - width % 2), max(2, height - height % 2)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "v.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        f"color=c=0x{r:02x}{g:02x}{b:02x}:s={width}x{height}:r={fps}:d={seconds}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                        "-y", str(out)], check=True, capture_output=True)
        return out.read_bytes()


@functools.lru_cache(maxsize=32)
def mp4_once(width: int, height: int, seconds: int, seed: str) -> bytes:
    """`mp4`, made once for each size, length and seed: a server asked for the same clip
    again serves it at once."""
    return mp4(width, height, seconds, seed=seed)


_PLAIN: dict[tuple[int, int, int], bytes] = {}


def mp4_tagged(width: int, height: int, seconds: int, seed: str) -> bytes:
    """A real MP4 of `seconds`, made by ffmpeg once per size and length; each clip its own
    bytes (a `free` box naming its seed, which players skip), so each has its own digest."""
    key = (width, height, seconds)
    if key not in _PLAIN:
        _PLAIN[key] = mp4(width, height, seconds, fps=24)
    tag = hashlib.sha256(seed.encode()).digest()
    return _PLAIN[key] + (8 + len(tag)).to_bytes(4, "big") + b"free" + tag


def wav(seconds: float, rate: int = 24000) -> bytes:
    """A real 16-bit mono WAV of `seconds` (a quiet tone)."""
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", (i * 37) % 2000 - 1000) for i in range(n))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def flat_png(width: int, height: int, seed: str = "") -> bytes:
    """A one-colour PNG like `png`, made in microseconds at any size: a palette image
    whose pixels are all index 0 (compressed once per size), its colour a function of `seed`."""
    width, height = max(1, width), max(1, height)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit palette
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", bytes(_colour(seed)))
            + chunk(b"IDAT", _blank_pixels(width, height)) + chunk(b"IEND", b""))


@functools.lru_cache(maxsize=16)
def _blank_pixels(width: int, height: int) -> bytes:
    return zlib.compress((b"\x00" * (width + 1)) * height, 9)  # each row: filter 0, indices 0
