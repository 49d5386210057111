"""The `local` backend's sound placeholders: music beds, ambience and effects, offline.

    render_music(description, seconds, out)     a tonal bed whose mood follows the words
    render_ambience(description, seconds, out)  filtered noise shaped by the words
    render_effect(description, out)             a short shaped burst

They are placeholders a person recognises in an animatic, not sound design: a
music cue is a slow chord progression (minor and low for "tense", "dark", "sad";
major and higher for "hopeful", "joyful", "bright"; with a pulse for "drums",
"percussion", "driving"), ambience is noise filtered by what it describes (wind,
water, rain, fire, crowd, night insects), and an effect is a burst shaped by its
words (a crack or snap is short and bright, a thud or boom low and longer, a
whoosh sweeps).  All are WAV, 48 kHz, stereo, 16-bit, made by ffmpeg's own
generators with fixed seeds: the same words and length give the same bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs

from filmc.backends.ffmpeg import run

__all__ = ["Mood", "mood_of", "render_music", "render_ambience", "render_effect",
           "EFFECT_SECONDS"]

SAMPLE_RATE = 48000
EFFECT_SECONDS = 1.2  # the longest effect burst; most are shorter
_WAV = ("-ar", str(SAMPLE_RATE), "-ac", "2", "-c:a", "pcm_s16le", "-fflags", "+bitexact",
        "-flags:a", "+bitexact", "-map_metadata", "-1", "-filter_threads", "1")


def _words(text: str) -> set[str]:
    return set("".join(c if c.isalpha() else " " for c in text.lower()).split())


def _has(text: str, words: set[str], zh: tuple[str, ...] = ()) -> bool:
    return bool(_words(text) & words) or any(z in text for z in zh)


@attrs.frozen
class Mood:
    minor: bool  # a minor progression (tense, dark, sad) or a major one
    root: float  # Hz of the progression's first chord
    pulse: float  # beats a second of a soft pulse, 0 for none
    seconds_a_chord: float


_DARK = {"tense", "dark", "sad", "foreboding", "ominous", "menacing", "grim", "mournful",
         "melancholy", "melancholic", "sombre", "somber", "eerie", "danger", "threatening",
         "tragic", "lonely", "cold", "suspense", "suspenseful"}
_DARK_ZH = ("紧张", "黑暗", "悲", "忧", "阴", "危险", "恐")
_BRIGHT = {"hopeful", "joyful", "bright", "happy", "triumphant", "warm", "uplifting",
           "playful", "light", "tender", "gentle", "peaceful", "serene"}
_LOW = {"low", "deep", "bass", "cello", "cellos", "drone", "strings"}
_HIGH = {"high", "flute", "erhu", "bells", "chimes", "celesta"}
_PULSE = {"drums", "drum", "percussion", "driving", "pulse", "pulsing", "march", "beat",
          "rhythmic", "heartbeat", "war"}
_FAST = {"fast", "urgent", "chase", "frantic", "racing"}


def mood_of(description: str) -> Mood:
    """What a music description asks of the placeholder bed."""
    minor = _has(description, _DARK, _DARK_ZH) or not _has(description, _BRIGHT, ("欢", "暖", "希望"))
    root = 110.0 if minor else 146.8  # A2 or D3
    if _has(description, _LOW):
        root /= 2 ** (5 / 12)
    if _has(description, _HIGH):
        root *= 2
    fast = _has(description, _FAST)
    pulse = (2.5 if fast else 1.5) if _has(description, _PULSE, ("鼓",)) else 0.0
    return Mood(minor, root, pulse, 2.0 if fast else 4.0)


def _chord(f: float, third: float, amp: float) -> str:
    return "+".join(f"{a:.3f}*sin(2*PI*{f * r:.3f}*t)"
                    for r, a in ((1, amp), (third, amp * 0.7), (1.4983, amp * 0.6), (0.5, amp * 0.8)))


def render_music(description: str, seconds: float, out: Path) -> Path:
    """A chord bed as long as the cue: i-VI-iv-v (minor) or I-vi-IV-V (major)."""
    mood = mood_of(description)
    third = 1.1892 if mood.minor else 1.2599  # minor or major third
    steps = (0, 8, 5, 7) if mood.minor else (0, 9, 5, 7)  # semitones above the root
    n = mood.seconds_a_chord
    chords = []
    for i, semis in enumerate(steps):
        f = mood.root * 2 ** (semis / 12) / (2 if semis > 7 else 1)
        chords.append(f"between(mod(t,{4 * n}),{i * n},{(i + 1) * n - 1e-4})*({_chord(f, third, 0.09)})")
    swell = f"(0.75+0.25*sin(2*PI*t/{2 * n}))"
    pulse = (f"*(0.55+0.45*exp(-8*mod(t,{1 / mood.pulse:.4f})))" if mood.pulse else "")
    expr = f"({'+'.join(chords)})*{swell}{pulse}"
    fade = min(1.5, seconds / 4)
    run(["-f", "lavfi", "-i", f"aevalsrc=exprs='{expr}':s={SAMPLE_RATE}:d={seconds:.6f}",
         "-af", f"afade=t=in:d={fade:.3f},afade=t=out:st={max(0.0, seconds - fade):.6f}:d={fade:.3f},"
                "aecho=0.8:0.6:60|110:0.25|0.18",
         "-t", f"{seconds:.6f}", *_WAV, "-y", out], f"make the music bed `{Path(out).name}`")
    return Path(out)


# Ambience: (words, Chinese, noise colour, filters).
_AMBIENCE = (
    ({"wind", "breeze", "gale", "storm", "blizzard"}, ("风",), "pink",
     "bandpass=f=500:width_type=o:w=2,tremolo=f=0.15:d=0.6"),
    ({"rain", "drizzle", "downpour"}, ("雨",), "white", "highpass=f=1200,lowpass=f=9000"),
    ({"water", "river", "stream", "waves", "sea", "ocean", "surf"}, ("水", "河", "海"), "pink",
     "lowpass=f=1500,tremolo=f=0.12:d=0.7"),
    ({"fire", "campfire", "crackling", "hearth"}, ("火",), "brown", "lowpass=f=800"),
    ({"crowd", "market", "voices", "chatter", "city", "traffic"}, ("人群", "市"), "pink",
     "bandpass=f=900:width_type=o:w=1.5"),
    ({"night", "insects", "crickets", "cicadas"}, ("夜", "虫"), "white",
     "bandpass=f=4500:width_type=q:w=8,tremolo=f=12:d=0.5"),
)


def render_ambience(description: str, seconds: float, out: Path) -> Path:
    """Noise filtered by what the description names (wind over grass: pink noise in a
    swaying band; default: a soft low room tone)."""
    colour, filters = "brown", "lowpass=f=400"
    for en, zh, c, f in _AMBIENCE:
        if _has(description, en, zh):
            colour, filters = c, f
            break
    seed = int.from_bytes(hashlib.sha256(description.encode()).digest()[:3], "big")
    fade = min(1.0, seconds / 4)
    run(["-f", "lavfi", "-i",
         f"anoisesrc=c={colour}:r={SAMPLE_RATE}:a=0.3:seed={seed}:d={seconds:.6f}",
         "-af", f"{filters},afade=t=in:d={fade:.3f},"
                f"afade=t=out:st={max(0.0, seconds - fade):.6f}:d={fade:.3f}",
         "-t", f"{seconds:.6f}", *_WAV, "-y", out], f"make the ambience `{Path(out).name}`")
    return Path(out)


# Effects: (words, Chinese, seconds, noise colour, filters).
_EFFECTS = (
    ({"crack", "cracks", "snap", "snaps", "shot", "gunshot", "click", "knock", "knocks",
      "break", "breaks", "smash", "whip"}, ("裂", "枪", "敲", "碎"), 0.35, "white",
     "highpass=f=1500"),
    ({"thud", "boom", "explosion", "thunder", "crash", "falls", "fall", "stomp", "hoof",
      "hooves", "gallop"}, ("轰", "雷", "撞", "蹄"), 1.0, "brown", "lowpass=f=300"),
    ({"whoosh", "swish", "swoosh", "arrow", "flies", "rush"}, ("嗖",), 0.8, "pink",
     "bandpass=f=1200:width_type=o:w=2,vibrato=f=3:d=0.5"),
    ({"howl", "howls", "howling", "cry", "cries", "scream", "whistle"}, ("嚎", "叫", "哨"), 1.2,
     "pink", "bandpass=f=700:width_type=q:w=6"),
)


def render_effect(description: str, out: Path) -> Path:
    """A burst shaped by its words: a fast attack and a decay as long as the sound."""
    seconds, colour, filters = 0.6, "pink", "bandpass=f=1000:width_type=o:w=3"
    for en, zh, s, c, f in _EFFECTS:
        if _has(description, en, zh):
            seconds, colour, filters = s, c, f
            break
    seed = int.from_bytes(hashlib.sha256(description.encode()).digest()[:3], "big")
    run(["-f", "lavfi", "-i",
         f"anoisesrc=c={colour}:r={SAMPLE_RATE}:a=0.9:seed={seed}:d={seconds:.6f}",
         "-af", f"{filters},afade=t=in:d=0.005,afade=t=out:st=0.01:d={seconds - 0.01:.4f}:curve=exp",
         "-t", f"{seconds:.6f}", *_WAV, "-y", out], f"make the effect `{Path(out).name}`")
    return Path(out)
