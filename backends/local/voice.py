"""The `local` backend's voices: dialogue spoken by eSpeak NG, offline.

    speak(text, voice, speaker, language)  →  (samples: bytes, rate: int)   # 16-bit mono
    choose(voice, speaker, language, text) →  Voice                         # what it will say it with
    engine_version()                       →  "1.52.0"                      # enters the steps' keys

eSpeak NG comes from the `espeakng-loader` wheel, which ships `libespeak-ng` and its
voice data (about 100 languages, Mandarin `cmn` and Cantonese `yue` among them) and
nothing else: no Python API.  So this module drives the shipped library with ctypes,
in process, through its documented C API (`speak_lib.h`: `espeak_Initialize` in
synchronous mode, a synth callback that collects the samples, `espeak_SetVoiceByName`
with a `+variant`, `espeak_SetParameter` for rate, pitch and range, `espeak_Synth`).
Why not the `espeak-ng` program: the wheel has none, and a process per line costs more
than the line.  Why in process is safe: a render worker (worker.py) renders one step at
a time, and a lock guards the library's global state all the same.

eSpeak NG is deterministic (no randomness in its synthesis), so the same words, voice
and language give the same samples: a speech step's output caches by its key.

What a `voice` description says becomes eSpeak's settings (`choose`): who speaks
(a child, a woman, a man: a variant and a base pitch), what shifts it (old, deep,
high, slow, fast, monotone, whispering), and the speaker's name for the small
differences between two speakers of one kind.  The language is the line's (the
film's, the scene's or the shot's `language`), or Mandarin for a line in Chinese
characters with no language set, and English otherwise.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import subprocess
import sys
import threading

import attrs

__all__ = ["Voice", "VoiceError", "choose", "speak", "engine_version", "espeak_language"]


class VoiceError(Exception):
    """eSpeak NG is missing or refused a line."""


@attrs.frozen
class Voice:
    name: str  # eSpeak's voice: language + variant, as `cmn+f3`
    pitch: int  # 0-100, eSpeak's default 50
    rate: int  # words a minute, eSpeak's default 175
    range: int  # 0-100: how much the pitch moves (intonation), default 50


# Who speaks: (kind, variants to choose from by name, base pitch, English words, Chinese).
# Checked in order: a girl is a child before she is a woman.
_WHO = (("child", ("f4", "f5"), 92, {"child", "boy", "girl", "kid", "baby", "toddler",
                                     "childlike", "childish"}, ("孩", "童", "娃")),
        ("woman", ("f1", "f2", "f3"), 55, {"woman", "female", "lady", "mother", "grandmother",
                                           "feminine", "herdswoman", "she", "girlish"},
         ("女", "妈", "婆", "奶")),
        ("man", ("m1", "m3", "m6"), 50, {"man", "male", "father", "grandfather", "masculine",
                                         "herdsman", "he"}, ("男", "爸", "爷", "父")))
# What shifts it: (pitch offset, rate factor, range offset, English words, Chinese).
_SHADES = ((-15, 0.78, -10, {"old", "elderly", "aged", "ancient"}, ("老",)),
           (4, 1.05, 0, {"young", "youthful"}, ("年轻",)),
           (-12, 1.0, 0, {"deep", "low", "bass", "gravelly", "husky"}, ("低", "沉", "粗")),
           (12, 1.0, 0, {"high", "shrill", "squeaky", "piping", "bright"}, ("尖", "高")),
           (0, 0.8, 0, {"slow", "slowly", "drawling", "measured"}, ("慢",)),
           (0, 1.2, 0, {"fast", "quick", "brisk", "rapid", "hurried", "terse"}, ("快", "急")),
           (0, 1.0, -30, {"flat", "monotone", "toneless", "deadpan"}, ("平淡",)),
           (0, 1.0, 25, {"lively", "expressive", "excited", "animated"}, ("激动",)))
_WHISPER = ({"whisper", "whispers", "whispering", "whispered"}, ("耳语", "低语"))
# Old voices: eSpeak's own old woman (a tremble), and its lowest man (its `grandpa`
# trembles too but sits higher than `m1`).
_OLD = {"man": "m1", "woman": "grandma"}

NORMAL_RATE = 175

# A language tag (ISO 639-1 or -2, or a name) → eSpeak's language, for the tags whose
# eSpeak name is not the tag itself.
_LANGUAGES = {"zh": "cmn", "zho": "cmn", "chi": "cmn", "cmn": "cmn", "chinese": "cmn",
              "mandarin": "cmn", "中文": "cmn", "汉语": "cmn", "漢語": "cmn", "普通话": "cmn",
              "yue": "yue", "cantonese": "yue", "粤语": "yue", "廣東話": "yue",
              "en": "en-us", "eng": "en-us", "english": "en-us", "en-gb": "en", "en-uk": "en",
              "ja": "ja", "jpn": "ja", "japanese": "ja", "日本語": "ja",
              "ko": "ko", "kor": "ko", "korean": "ko", "한국어": "ko",
              "fr": "fr", "fra": "fr", "fre": "fr", "french": "fr", "de": "de", "deu": "de",
              "ger": "de", "german": "de", "es": "es", "spa": "es", "spanish": "es",
              "it": "it", "ita": "it", "ru": "ru", "rus": "ru", "pt": "pt", "por": "pt",
              "mn": "mn", "mon": "mn", "mongolian": "mn", "nl": "nl", "nld": "nl",
              "sv": "sv", "swe": "sv", "pl": "pl", "pol": "pl", "tr": "tr", "tur": "tr",
              "ar": "ar", "ara": "ar", "hi": "hi", "hin": "hi", "vi": "vi", "vie": "vi"}


def _is_cjk(c: str) -> bool:
    return "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff"


def espeak_language(language: str | None, text: str) -> str:
    """eSpeak's language for a line: its tag's ("zh" → "cmn", "zh-HK" → "yue", "fr-CA" →
    "fr"), or, with no tag or one eSpeak does not speak, Mandarin for a line in Chinese
    characters and English for anything else."""
    tag = (language or "").strip().lower().replace("_", "-")
    if tag in ("zh-hk", "zh-mo", "zh-yue"):
        return "yue"
    for candidate in (tag, tag.split("-")[0]):
        if candidate in _LANGUAGES:
            return _LANGUAGES[candidate]
        if candidate and candidate.isascii() and candidate.isalpha() and _has_voice(candidate):
            return candidate
    return "cmn" if any(_is_cjk(c) for c in text) else "en-us"


def _words(text: str) -> tuple[set[str], str]:
    low = text.lower()
    return set("".join(c if c.isascii() and c.isalpha() else " " for c in low).split()), low


def choose(voice: str, speaker: str, language: str | None, text: str) -> Voice:
    """eSpeak's settings for a `voice` description (and the line's direction after `;`).

    A child's voice is higher than a woman's, a woman's than a man's; old, deep or slow
    voices are lower or slower; a description that names nobody gets a kind from the
    speaker's name.  Two speakers of one kind differ by variant and a few steps of pitch."""
    words, low = _words(voice)
    digest = hashlib.sha256(speaker.encode()).digest()
    found = next((w for w in _WHO if words & w[3] or any(z in low for z in w[4])), None)
    who = found or (_WHO[1] if digest[1] % 2 else _WHO[2])
    kind, variants, pitch, _en, _zh = who
    variant = variants[digest[0] % len(variants)]
    pitch += digest[2] % 7 - 3
    rate, spread = 1.0, 50
    old = False
    for dp, pace, dr, en, zh in _SHADES:
        if words & en or any(z in low for z in zh):
            pitch, rate, spread = pitch + dp, rate * pace, spread + dr
            old = old or pace == 0.78
    if old and kind in _OLD:
        variant = _OLD[kind]
    if words & _WHISPER[0] or any(z in low for z in _WHISPER[1]):
        variant = "whisperf" if kind != "man" else "whisper"
    return Voice(name=f"{espeak_language(language, text)}+{variant}",
                 pitch=max(0, min(100, pitch)), rate=max(80, min(400, round(NORMAL_RATE * rate))),
                 range=max(0, min(100, spread)))


# -- the library -------------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when the callback has all
_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT: report a missing data folder, do not exit
_UTF8 = 1  # espeakCHARS_UTF8
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER

_lock = threading.Lock()
_chunks: list[bytes] = []


@_CALLBACK
def _collect(wav, count, _events):
    if wav and count > 0:
        _chunks.append(ctypes.string_at(wav, count * 2))
    return 0


@functools.cache
def _engine() -> tuple[ctypes.CDLL, int]:
    """The shipped library, initialised once per process: (library, sample rate)."""
    try:
        import espeakng_loader
    except ImportError as e:
        raise VoiceError("eSpeak NG is not installed; install filmc's dependencies again "
                         "(`pip install espeakng-loader`)") from e
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as e:
        raise VoiceError(f"eSpeak NG could not be loaded: {e}") from e
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.restype = ctypes.c_char_p
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, data.encode(), _DONT_EXIT)
    if rate <= 0:
        raise VoiceError(f"eSpeak NG could not start with its voice data at {data}")
    lib.espeak_SetSynthCallback(_collect)
    return lib, rate


@functools.cache
def _has_voice(name: str) -> bool:
    lib, _ = _engine()
    with _lock:
        return lib.espeak_SetVoiceByName(name.encode()) == 0


@functools.cache
def engine_version() -> str:
    """eSpeak NG's version, or `none (why)`: a speech step's key includes it."""
    try:
        lib, _ = _engine()
    except VoiceError as e:
        return f"none ({e})"
    return (lib.espeak_Info(None) or b"unknown").decode()


def _speak_here(text: str, voice: Voice) -> tuple[bytes, int]:
    """The line said in this process, by a library that has said nothing before."""
    lib, rate = _engine()
    with _lock:
        if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            language = voice.name.split("+")[0]
            if lib.espeak_SetVoiceByName(language.encode()) != 0:
                raise VoiceError(f"eSpeak NG has no voice `{voice.name}`")
        for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.range)):
            lib.espeak_SetParameter(param, value, 0)
        # Breathy variants (`f3`...) add noise from a generator seeded by the clock, so
        # the same line differed from one second to the next: a fixed seed.
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(1)
        data = text.encode()
        _chunks.clear()
        error = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _UTF8, None, None)
        lib.espeak_Synchronize()
        samples = b"".join(_chunks)
        _chunks.clear()
    if error != 0:
        raise VoiceError(f"eSpeak NG could not say {text!r} (error {error})")
    return samples, rate


def speak(text: str, voice: Voice) -> tuple[bytes, int]:
    """The line said in `voice`: (16-bit little-endian mono samples, sample rate).

    Each line is said by a fresh process: eSpeak NG keeps state from one utterance to
    the next (the same line said twice in one process differs by a few hundred samples,
    and neither `espeak_Terminate` nor `espeak_ng_SetRandSeed` resets it), while a
    library's first utterance is the same every time.  A process costs about 0.1 s."""
    request = json.dumps({"text": text, **attrs.asdict(voice)})
    try:
        done = subprocess.run([sys.executable, "-m", "filmc.backends.local.voice"],
                              input=request.encode(), capture_output=True, timeout=120,
                              preexec_fn=_die_with_parent)
    except (OSError, subprocess.SubprocessError) as e:
        raise VoiceError(f"eSpeak NG could not be started: {e}") from e
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise VoiceError(f"eSpeak NG could not say {text!r}: {why[-1] if why else done.returncode}")
    rate = int.from_bytes(done.stdout[:4], "little")
    return done.stdout[4:], rate


def _die_with_parent() -> None:
    from .worker import die_with_parent

    die_with_parent()


def main() -> None:
    """`python -m filmc.backends.local.voice`: one JSON request on stdin, the sample rate
    (4 bytes, little-endian) and the samples on stdout; a VoiceError's message on stderr."""
    request = json.loads(sys.stdin.buffer.read())
    text = request.pop("text")
    try:
        samples, rate = _speak_here(text, Voice(**request))
    except VoiceError as e:
        print(e, file=sys.stderr)
        raise SystemExit(1) from None
    sys.stdout.buffer.write(rate.to_bytes(4, "little") + samples)


if __name__ == "__main__":
    main()
