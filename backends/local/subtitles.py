"""Subtitles a person can read: the dialogue's timing turned into SubRip cues.

    cues([(start, end, text, speaker), ...], film_end)  →  [(start, end, text), ...]

A line of dialogue is timed to the moment it is said (compiler/passes.py), which
is often too short to read.  Each cue therefore stays on screen at least
`MIN_SECONDS`, and at least as long as its text takes to read: `LATIN_CPS`
characters a second, `CJK_CPS` for Chinese, Japanese and Korean characters
(spaces do not count).  A cue never overlaps the next: it is shortened to the
next one's start.  Where that would leave a line too short to read, it shares one
event with the next line (two lines at most), each with a leading dash when two
people speak, the way dialogue subtitles are written.

`mp4_language(tag)` maps the film's `language` ("zh", "en-GB", "zho") to the
ISO 639-2 code that the mp4 muxer stores ("zho", "eng"), or None.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

MIN_SECONDS = 1.0  # no cue is shorter, unless the next one starts sooner
LATIN_CPS = 17.0  # characters read a second: Latin, Cyrillic, Greek... (BBC, EBU: 15-17)
CJK_CPS = 5.0  # Chinese, Japanese and Korean characters read a second
DASH = "- "  # the dialogue dash, before each speaker's line in a two-speaker event
MAX_LINE = 42  # a line of an event that joins two, in character widths (CJK: 2 each)


def _wide(c: str) -> bool:
    return unicodedata.east_asian_width(c) in ("W", "F")


def reading_time(text: str) -> float:
    """Seconds a person needs to read `text`: at least MIN_SECONDS."""
    cjk = sum(1 for c in text if _wide(c) and not unicodedata.category(c).startswith("P"))
    other = sum(1 for c in text if not c.isspace() and not _wide(c))
    return max(MIN_SECONDS, cjk / CJK_CPS + other / LATIN_CPS)


def _width(text: str) -> int:
    return sum(2 if _wide(c) else 1 for c in text)


def cues(lines: Sequence[tuple[float, float, str, str]],
         film_end: float | None = None) -> list[tuple[float, float, str]]:
    """(start, end, text) cues, in time order, from (start, end, text, speaker) lines."""
    events: list[tuple[float, float, list[tuple[str, str]]]] = []  # start, said until, lines
    ordered = sorted(((float(a), float(b), str(t).strip(), str(s)) for a, b, t, s in lines),
                     key=lambda x: x[0])
    for start, end, text, speaker in ordered:
        if not text:
            continue
        if events:
            first, said, held = events[-1]
            readable = first + reading_time(" ".join(t for _s, t in held))
            # The event so far cannot be read before this line starts: join it, when both
            # fit on a line of their own.
            if (len(held) == 1 and readable > start and "\n" not in held[0][1] + text
                    and max(_width(held[0][1]), _width(text)) <= MAX_LINE):
                events[-1] = (first, max(said, end), [*held, (speaker, text)])
                continue
        events.append((start, end, [(speaker, text)]))
    out: list[tuple[float, float, str]] = []
    for i, (start, said, held) in enumerate(events):
        end = max(said, start + reading_time(" ".join(t for _s, t in held)))
        if i + 1 < len(events):
            end = min(end, events[i + 1][0])
        if film_end is not None:
            end = min(end, max(start, float(film_end)))
        two = len({s for s, _t in held}) > 1
        body = "\n".join(DASH + t if two else t for _s, t in held)
        out.append((start, end, body))
    return out


# ISO 639-1 → ISO 639-2/T, the three letters an mp4 track's language is stored as.
_ISO639_2 = {
    "ar": "ara", "bg": "bul", "bn": "ben", "ca": "cat", "cs": "ces", "cy": "cym", "da": "dan",
    "de": "deu", "el": "ell", "en": "eng", "es": "spa", "et": "est", "eu": "eus", "fa": "fas",
    "fi": "fin", "fr": "fra", "ga": "gle", "gl": "glg", "gu": "guj", "he": "heb", "hi": "hin",
    "hr": "hrv", "hu": "hun", "hy": "hye", "id": "ind", "is": "isl", "it": "ita", "ja": "jpn",
    "ka": "kat", "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "lo": "lao", "lt": "lit",
    "lv": "lav", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa", "my": "mya",
    "nb": "nob", "ne": "nep", "nl": "nld", "nn": "nno", "no": "nor", "pa": "pan", "pl": "pol",
    "pt": "por", "ro": "ron", "ru": "rus", "si": "sin", "sk": "slk", "sl": "slv", "sq": "sqi",
    "sr": "srp", "sv": "swe", "sw": "swa", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "yue": "yue", "zh": "zho",
    "zu": "zul",
}
_NAMES = {"chinese": "zho", "中文": "zho", "汉语": "zho", "漢語": "zho", "普通话": "zho",
          "english": "eng", "英语": "eng", "japanese": "jpn", "日本語": "jpn", "日语": "jpn",
          "korean": "kor", "한국어": "kor", "粤语": "yue", "廣東話": "yue", "cantonese": "yue"}


def mp4_language(tag: str | None) -> str | None:
    """The ISO 639-2 code for a language tag ("zh", "zh-Hans-CN", "en_US", "eng",
    "Chinese"), or None when it names no language this table knows."""
    if not tag:
        return None
    text = tag.strip().lower()
    if text in _NAMES:
        return _NAMES[text]
    base = text.replace("_", "-").split("-")[0]
    if base in _ISO639_2:
        return _ISO639_2[base]
    if len(base) == 3 and base.isascii() and base.isalpha():
        return base  # already ISO 639-2 (either form: ffmpeg stores it as given)
    return None
