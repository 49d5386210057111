"""The `elevenlabs` adapter against a loopback ElevenLabs API (tests/loopback/elevenlabs.py).

Real HTTP on 127.0.0.1, real PCM audio kept as WAV.  The first part drives the adapter
as the engine does (submit → Done, fetch) for speech, sound effects and music, and for
each fault the kind the engine acts on and whether it may be sent again; the second
part runs `filmc build` on the tiny sound film with its speech, sfx and music steps
routed to the loopback server, the key in no output, file or log.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import pytest
from adapter_harness import closing, drive, fast, filmc, no_key_in, raised, report, request, toml
from loopback import serve
from loopback.elevenlabs import ElevenLabsState, make_app
from test_sound import SOUND_FILM

from filmc.backends.elevenlabs import DEFAULT_VOICE, ElevenLabs
from filmc.backends.protocol import FailureKind, Request, Setup
from filmc.backends.registry import adapter_class
from filmc.lang.steps import StepId

KEY = "el-canary-5c0ffee7d1a9"  # must never appear in a message, a file or a log
KEYS = {"ELEVENLABS_API_KEY": KEY}


@pytest.fixture
def state() -> ElevenLabsState:
    return ElevenLabsState(key=KEY)


@pytest.fixture
def api(state: ElevenLabsState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield url


def adapter(api: str, root: Path, key: str = KEY, **settings: Any) -> ElevenLabs:
    return ElevenLabs(Setup(name="elevenlabs", settings={"base_url": api, **settings},
                            root=root, secret=lambda name: key if name == "api_key" else "",
                            uploads=None))


def line(tmp: Path, speaker: str | None, text: str = "There you are.") -> Request:
    return request(StepId.speech("one", "a1", 1), "elevenlabs", tmp / "speech",
                   text=text, speaker=speaker)


def seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_speech_sfx_and_music_come_back_as_wav(state, api, tmp_path):
    a = adapter(api, tmp_path, voices={"ANA": "voice-ana"})
    _, files, _ = closing(a, drive(a, line(tmp_path, "ANA")))
    assert files == {"audio": tmp_path / "speech" / "audio.wav"}
    assert seconds(files["audio"]) == pytest.approx(0.9)
    assert state.voices == ["voice-ana"] and state.formats == ["pcm_24000"]
    assert state.received[0] == {"route": "text-to-speech", "text": "There you are.",
                                 "model_id": "eleven_multilingual_v2"}

    bed = request(StepId.ambience("one"), "elevenlabs", tmp_path / "bed",
                  prompt="waves on the pier", duration=Fraction(45))
    a = adapter(api, tmp_path)
    _, files, _ = closing(a, drive(a, attrs.evolve(bed, params={"bed": True})))
    assert state.received[-1]["duration_seconds"] == 30  # ElevenLabs makes at most 30 s
    assert seconds(files["audio"]) == pytest.approx(30)

    cue = request(StepId.music("one", None), "elevenlabs", tmp_path / "music",
                  prompt="hopeful, warm strings", duration=Fraction(5, 2))
    a = adapter(api, tmp_path, music_model="music_v1", output_format="pcm_16000")
    _, files, _ = closing(a, drive(a, cue))
    assert state.received[-1] == {"route": "music", "prompt": "hopeful, warm strings",
                                  "model_id": "music_v1", "music_length_ms": 3000}
    assert state.formats[-1] == "pcm_16000" and seconds(files["audio"]) == pytest.approx(3)


def test_the_voice_is_the_characters_else_the_default(state, api, tmp_path):
    a = adapter(api, tmp_path, voices={"ANA": "voice-ana"})
    closing(a, drive(a, line(tmp_path / "bo", "BO")))
    a = adapter(api, tmp_path, voice="voice-any")
    closing(a, drive(a, line(tmp_path / "x", "BO")))
    assert state.voices == [DEFAULT_VOICE, "voice-any"]
    assert ElevenLabs.key_request("speech", {"voices": {"ANA": "v1"}},
                                  line(tmp_path, "ANA").fields) == {"voice": "v1"}


@pytest.mark.parametrize(("fault", "kind", "unbilled", "said"), [
    (("status", 429, {"Retry-After": "2"}, None), FailureKind.RATE_LIMITED, True, "429"),
    (("status", 500, None, None), FailureKind.TRANSIENT, True, "500"),
    (("status", 503, None, None), FailureKind.TRANSIENT, True, "503"),
    (("status", 504, None, None), FailureKind.TRANSIENT, False, "may have been made"),
    (("status", 422, None, None), FailureKind.INVALID, False, "422"),
    (("quota",), FailureKind.CREDIT, False, "out of credit"),
    (("reset",), FailureKind.TRANSIENT, False, "broke"),
    (("corrupt",), FailureKind.FAILED, False, "not the raw 16-bit PCM"),
])
def test_each_fault_means_what_elevenlabs_documents(state, api, tmp_path, fault, kind,
                                                    unbilled, said):
    state.faults.append(fault)
    a = adapter(api, tmp_path)
    e = raised(lambda: closing(a, drive(a, line(tmp_path, "ANA"))), KEY)
    assert (e.kind, e.unbilled) == (kind, unbilled) and said in e.message, e.message
    if fault[1:2] == (429,):
        assert e.retry_after == pytest.approx(2)


def test_a_refused_key_stops_the_backend_and_never_shows(state, api, tmp_path):
    a = adapter(api, tmp_path, key="el-not-this-one")
    e = raised(lambda: closing(a, drive(a, line(tmp_path, "ANA"))), KEY, "el-not-this-one")
    assert e.kind is FailureKind.AUTH and "api_key_env" in e.message
    assert state.auth_failures == 1 and state.billed == 0


def test_declarations_and_settings(tmp_path):
    assert adapter_class("elevenlabs") is ElevenLabs
    assert ElevenLabs.capabilities("clip", {}, tmp_path) is None
    assert ElevenLabs.key_fields("speech", {}) == {"text", "speaker", "take"}
    assert ElevenLabs.key_extra("music", {}) == {"music_model": "music_v1"}
    assert ElevenLabs.key_settings("sfx", {"music_model": "m", "prompt_influence": 0.5,
                                           "retries": 3}) == {"prompt_influence": 0.5}
    assert ElevenLabs.check_settings({"voices": {"ANA": "x"}, "output_format": "pcm_44100"}) == []
    got = {p.setting: p for p in ElevenLabs.check_settings(
        {"output_format": "mp3_44100_128", "prompt_influence": 2, "voices": {"ANA": 3},
         "base_url": "api.elevenlabs.io", "voice_s": "x"})}
    assert set(got) == {"output_format", "prompt_influence", "voices", "base_url", "voice_s"}
    assert got["voice_s"].warning


# -- the command line -------------------------------------------------------------------------


def test_a_film_built_with_elevenlabs_sound_keeps_no_key(tmp_path, state, api):
    project = tmp_path / "tiny"
    project.mkdir()
    (project / "tiny.film").write_text(SOUND_FILM, encoding="utf-8")
    (project / "filmc.toml").write_text(toml({
        "steps": {"speech": "elevenlabs", "music": "elevenlabs", "sfx": "elevenlabs"},
        "backends.elevenlabs": {"type": "elevenlabs", "api_key_env": "ELEVENLABS_API_KEY",
                                "base_url": api, "voices": {"ANA": "voice-ana"}, **fast(2)}}),
        encoding="utf-8")
    state.faults.append(("status", 503, None, None))  # retried: nothing was made
    r = filmc(project, "build", "tiny.film", keys=KEYS)
    steps = report(project, "tiny")
    made = {s: v["status"] for s, v in steps.items() if s.split(".")[0] in ("speech", "music",
                                                                              "sfx")}
    assert len(made) == 10 and set(made.values()) == {"ran"}, made
    assert steps["film"]["status"] == "ran"
    routes = set(state.requests)
    assert routes == {"text-to-speech", "sound-generation", "music"}
    assert "voice-ana" in state.voices
    assert state.billed == len(state.received)  # the 503 made nothing and cost nothing
    assert (project / "build" / "tiny" / "film.music.wav").exists()
    sent = sum(state.requests.values())
    again = filmc(project, "build", "tiny.film", keys=KEYS)
    assert sum(state.requests.values()) == sent  # all cached: nothing is paid twice
    no_key_in(project, [KEY], said=[r, again])
