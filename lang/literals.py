"""Reading number-like literals as the type an attribute expects.

The scanner keeps every number-like word as one `Literal` (so `4x` is one bad
word, not `4` then `x`); these functions read it as a duration, size, ratio,
lens, whole number or number.  Each returns the value, or raises `BadLiteral`
whose message says what was expected and how to write it.
"""

from __future__ import annotations

import re
from fractions import Fraction

import attrs

from .paths import shown

MAX_DIGITS = 12  # in one number: more is a typo, and would be slow to compute with
MAX_SECONDS = 3600  # one duration (a shot, a default): an hour
MAX_INT_DIGITS = 19  # a whole number (a seed goes up to 2^63-1)


class BadLiteral(ValueError):
    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help


@attrs.frozen
class Duration:
    """Seconds exactly (a Fraction), or a whole number of frames until the fps is known."""

    seconds: Fraction | None = None
    frames: int | None = None

    def at(self, fps: Fraction) -> Fraction:
        """The length in seconds at `fps`."""
        if self.seconds is not None:
            return self.seconds
        assert self.frames is not None
        return Fraction(self.frames) / fps


_DECIMAL = r"\d+(?:\.\d+)?"
_DUR_UNIT = re.compile(rf"({_DECIMAL})(s|ms|f)")
_TIMECODE = re.compile(r"(?:(\d+):)?(\d+):(\d\d(?:\.\d+)?)")
_SIZE = re.compile(r"(\d+)x(\d+)")
_RATIO = re.compile(rf"({_DECIMAL}):({_DECIMAL})")
_LENS = re.compile(rf"({_DECIMAL})mm")
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(rf"[+-]?{_DECIMAL}")
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

_DURATION_HELP = "write seconds (`4s`, `1.5s`), milliseconds (`500ms`), a timecode (`0:04`) or frames (`96f`)"


def _s(text: str) -> str:
    return shown(text, 40)


def _digits(text: str, limit: int = MAX_DIGITS) -> None:
    """Refuse a number with more than `limit` digits in a row before reading it."""
    run = 0
    for c in text:
        run = run + 1 if c.isdecimal() else 0
        if run > limit:
            raise BadLiteral(f"`{_s(text)}` has a number too large",
                             f"numbers in a film have at most {limit} digits")


def duration(text: str) -> Duration:
    _digits(text)
    m = _DUR_UNIT.fullmatch(text)
    if m:
        value = Fraction(m.group(1))
        unit = m.group(2)
        if unit == "f":
            if value.denominator != 1:
                raise BadLiteral(f"`{_s(text)}` is not a whole number of frames", _DURATION_HELP)
            d = Duration(frames=int(value))
        else:
            d = Duration(seconds=value / 1000 if unit == "ms" else value)
    else:
        m = _TIMECODE.fullmatch(text)
        if not m:
            hint = _DURATION_HELP
            if _NUMBER.fullmatch(text):
                hint = f"add a unit: `{_s(text)}s` for seconds or `{_s(text)}f` for frames"
            raise BadLiteral(f"`{_s(text)}` is not a duration", hint)
        hours = int(m.group(1) or 0)
        minutes = int(m.group(2))
        seconds = Fraction(m.group(3))
        if seconds >= 60 or (m.group(1) and minutes >= 60):
            raise BadLiteral(f"`{_s(text)}` is not a valid timecode", "write minutes:seconds like `1:05`")
        d = Duration(seconds=hours * 3600 + minutes * 60 + seconds)
    if (d.seconds if d.seconds is not None else d.frames) == 0:
        raise BadLiteral(f"duration `{_s(text)}` is zero", "a duration must be longer than zero")
    if (d.seconds if d.seconds is not None else Fraction(d.frames or 0, 240)) > MAX_SECONDS:
        raise BadLiteral(f"duration `{_s(text)}` is too long",
                         "a duration goes up to an hour: `1:00:00`, `3600s`")
    return d


def size(text: str) -> tuple[int, int]:
    _digits(text)
    m = _SIZE.fullmatch(text)
    if not m:
        raise BadLiteral(f"`{_s(text)}` is not a frame size", "write width x height in pixels: `1920x1080`")
    w, h = int(m.group(1)), int(m.group(2))
    for what, v in (("width", w), ("height", h)):
        if not 16 <= v <= 8192:
            raise BadLiteral(f"frame {what} {v} is out of range", "width and height go from 16 to 8192 pixels")
        if v % 2:
            raise BadLiteral(f"frame {what} {v} is odd",
                             f"video encoders need even sizes: try `{w + w % 2}x{h + h % 2}`")
    return w, h


def ratio(text: str) -> Fraction:
    _digits(text)
    m = _RATIO.fullmatch(text)
    if not m:
        raise BadLiteral(f"`{_s(text)}` is not an aspect ratio", "write width:height, like `2.39:1` or `16:9`")
    a, b = Fraction(m.group(1)), Fraction(m.group(2))
    if a == 0 or b == 0:
        raise BadLiteral(f"aspect ratio `{_s(text)}` has a zero side", "both sides must be greater than zero")
    r = a / b
    if not Fraction(1, 10) <= r <= 10:
        raise BadLiteral(f"aspect ratio `{_s(text)}` is out of range", "ratios go from 1:10 to 10:1")
    return r


def lens(text: str) -> Fraction:
    _digits(text)
    m = _LENS.fullmatch(text)
    if not m:
        raise BadLiteral(f"`{_s(text)}` is not a lens", "write the focal length in millimetres: `35mm`")
    v = Fraction(m.group(1))
    if not 1 <= v <= 2000:
        raise BadLiteral(f"lens `{_s(text)}` is out of range", "focal lengths go from 1mm to 2000mm")
    return v


def integer(text: str) -> int:
    _digits(text, MAX_INT_DIGITS)
    if not _INT.fullmatch(text):
        raise BadLiteral(f"`{_s(text)}` is not a whole number")
    return int(text)


def number(text: str) -> Fraction:
    _digits(text)
    if not _NUMBER.fullmatch(text):
        raise BadLiteral(f"`{_s(text)}` is not a number", "write a plain number such as `24`, `0.85` or `-12`")
    return Fraction(text)


def color(text: str) -> tuple[int, int, int]:
    if not _COLOR.fullmatch(text):
        raise BadLiteral(f"`{_s(text)}` is not a colour", "write `#rrggbb` in hexadecimal, like `#f4a259`")
    h = text[1:]
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def format_runtime(seconds: Fraction | float) -> str:
    """`1:02:03`, `4:05` or `0:12` (rounded to the second); `0:04.5` below a minute."""
    s = float(seconds)
    whole = int(round(s))
    if s < 60 and abs(s - whole) > 1e-9:
        return f"0:{s:04.1f}"
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
