"""Write a synthetic feature film of N shots, laid out the way a real one is.

    python bench/make_film.py                      # 3000 shots into bench/out/film
    python bench/make_film.py --shots 200 --out /tmp/f --seed 7

The output is a complete project that `filmc check --strict` accepts with no
diagnostics:

    film.film          the header (2.39:1, 1920x804, 24 fps, style, takes) and
                       its `part` lines, in order
    cast.film          ~40 characters with 1-4 outfits each, ~25 locations (some
                       with time-of-day variants), the film's own presets
    seq/NN_name.film   ~one part per 100 shots, in scenes of 5-40 shots
    refs/*.png         a few tiny reference images, so the image check runs

Shots mix every duration form (`2s`, `3.5s`, `0:04`, `96f`, `2500ms`), camera
lines with at most one preset per slot (read from stdlib/camera.film), light and
style presets from the standard library, casts with outfits, action prose,
dialogue that fits the shot at a normal speaking rate (about 5% in Chinese),
and the occasional takes, seed, tags, note, backend override and comment.

The same seed always writes the same bytes.  Nothing here imports filmc, so the
generator measures nothing but itself.
"""

from __future__ import annotations

import argparse
import random
import re
import struct
import sys
import time
import zlib
from pathlib import Path

from filmc.lang.check import speaking_time  # the checker's own estimate, so dialogue fits

HERE = Path(__file__).resolve().parent
STDLIB = HERE.parent / "stdlib"
DEFAULT_OUT = HERE / "out" / "film"
FPS = 24


# --- the standard library's preset names -------------------------------------------------

_PRESET = re.compile(r"^preset\s+(\w+)\s+(\w+)\s*\{(.*?)^\}", re.M | re.S)
_SLOT = re.compile(r"^\s*slot\s+(\w+)", re.M)


def read_presets(stdlib: Path = STDLIB) -> dict[str, dict[str, str | None]]:
    """{kind: {name: slot or None}} for every preset in stdlib/*.film."""
    out: dict[str, dict[str, str | None]] = {"camera": {}, "light": {}, "style": {}}
    for name in ("camera", "light", "style"):
        text = (stdlib / f"{name}.film").read_text(encoding="utf-8")
        for m in _PRESET.finditer(text):
            kind, pid, body = m.groups()
            if kind in out:
                slot = _SLOT.search(body)
                out[kind][pid] = slot.group(1) if slot else None
    return out


# --- word pools ------------------------------------------------------------------------

FIRST = [
    ("CHEN", "Chen Zhen"), ("BILGEE", "Bilgee"), ("GAMA", "嘎玛"), ("BATU", "巴图"),
    ("YANG", "Yang Ke"), ("ZHANG", "Director Zhang"), ("LAMJAV", "Lamjav"),
    ("ULJII", "Uljii"), ("DORJ", "Dorj"), ("SARNAI", "Sarnai"), ("TSETSEG", "Tsetseg"),
    ("BAO", "Bao Shungui"), ("LI", "Li Hong"), ("WANG", "老王"), ("ZHAO", "Zhao Ming"),
    ("SUN", "Sun Li"), ("NARAN", "Naran"), ("ODGEREL", "Odgerel"), ("TEMUR", "Temür"),
    ("MUNKH", "Munkh"), ("ALTAN", "Altan"), ("BOLOR", "Bolor"), ("GANBAA", "Ganbaa"),
    ("ENKH", "Enkh"), ("XIAO", "小梅"), ("LIU", "Liu Qiang"), ("HU", "Hu Yan"),
    ("MA", "Old Ma"), ("QIN", "Qin Shu"), ("FENG", "冯医生"), ("DOCTOR", "The doctor"),
    ("DRIVER", "The truck driver"), ("CADRE", "The young cadre"), ("BOY", "The herd boy"),
    ("GIRL", "Naran's daughter"), ("MONK", "The lama"), ("TEACHER", "Teacher Gao"),
    ("SOLDIER", "The soldier"), ("ALPHA", "The grey leader"), ("CUB", "The cub"),
]
AGES = ["in his twenties", "in her twenties", "in his thirties", "in her forties",
        "in his sixties", "in her seventies", "of about ten", "in middle age"]
FACES = ["sunburned, thin scar above the left eyebrow", "round wind-reddened cheeks",
         "deeply lined weathered face, wispy grey beard", "narrow watchful eyes, broad nose",
         "wire-rimmed glasses, short black hair", "long braided hair, silver earrings",
         "shaved head, heavy brows", "freckles, chipped front tooth", "gaunt, hollow cheeks"]
VOICES = ["calm, low", "old, slow, gravelly", "warm, brisk, clear", "deep, terse",
          "young, eager, quick", "soft, hesitant", "loud, cheerful", "dry, precise"]
OUTFITS = [
    ("winter", "knee-length sheepskin coat, fox-fur hat with ear flaps, felt boots"),
    ("summer", "faded cotton shirt, rolled sleeves, canvas trousers"),
    ("deel", "maroon felt-lined deel robe, orange silk sash"),
    ("uniform", "green army uniform with a red star cap"),
    ("riding", "padded riding coat, leather boots, a whip in the sash"),
    ("festival", "embroidered green silk deel, silver and coral headdress"),
    ("work", "patched overalls, a leather apron, work gloves"),
    ("night", "quilted jacket over a nightshirt, bare feet in boots"),
    ("rain", "oilcloth cape dripping with rain, hood up"),
    ("formal", "dark Mao suit, polished shoes, a pen in the breast pocket"),
    ("student", "blue cotton jacket, canvas satchel, cloth shoes"),
    ("hunting", "sheepskin deel with the fleece turned out, knife at the belt"),
]
PLACES = [
    ("STEPPE", "Olonbulag grassland", "endless rolling grassland, golden grass, low hills, huge sky"),
    ("YURT", "Bilgee's yurt", "inside a felt yurt: red lattice walls, iron stove, patterned rugs"),
    ("LAKE", "The frozen lake", "a wide frozen lake in a bowl of hills, reeds, snow on black ice"),
    ("CAMP", "The brigade camp", "a row of canvas tents, a flagpole, a water truck in the mud"),
    ("RIVER", "The Ulagai river", "a shallow winding river, pebble banks, willows bent by wind"),
    ("HILLS", "The black hills", "steep dark hills, scree slopes, eagles circling overhead"),
    ("PEN", "The sheep pen", "a stone-walled sheep pen, trampled straw, a wooden gate"),
    ("OFFICE", "The brigade office", "a whitewashed room, a desk, a portrait, a ticking clock"),
    ("CLINIC", "The clinic", "a bare clinic, iron bed, enamel basins, a cabinet of bottles"),
    ("TRUCK", "The supply truck", "the cab of an old truck, cracked windscreen, dust on the dash"),
    ("ROAD", "The dirt road", "a rutted dirt road across the plain, telegraph poles to the horizon"),
    ("MARSH", "The reed marsh", "tall reeds, black water, mist, the calls of cranes"),
    ("CAVE", "The wolf den", "a low cave mouth under a rock ledge, bones at the entrance"),
    ("TEMPLE", "The ruined temple", "a ruined lamasery, fallen beams, faded murals, prayer flags"),
    ("SCHOOL", "The tent school", "a tent with benches, a blackboard, children's drawings pinned up"),
    ("MARKET", "The trading post", "a muddy square of stalls, horses tied up, bolts of cloth"),
    ("WELL", "The old well", "a stone well on a rise, a wooden bucket, a trough for horses"),
    ("RIDGE", "The high ridge", "a knife-edge ridge, wind-flattened grass, the whole valley below"),
    ("KITCHEN", "The mess tent", "a long table, steaming pots, tin bowls, a smoky stove"),
    ("STABLE", "The horse lines", "a rope line of horses, saddles on a rail, hay bales"),
    ("BORDER", "The border post", "a barrier across the road, a sentry box, a red flag"),
    ("FOREST", "The birch wood", "thin white birches, snow between the trunks, silence"),
    ("STATION", "The railway halt", "a single platform, a water tower, the track straight to nowhere"),
    ("CLIFF", "The cliff edge", "a sheer drop to the plain, an eagle's nest on a ledge"),
    ("HOUSE", "The Beijing courtyard", "a grey brick courtyard, a date tree, washing on a line"),
]
SEQUENCES = [
    "opening", "arrival", "camp", "first_hunt", "yurt", "lesson", "cub", "market",
    "storm", "lake", "night_watch", "clinic", "inspection", "wolf_den", "wedding",
    "drought", "river", "fire", "letters", "return", "ridge", "raid", "trial",
    "winter", "temple", "border", "escape", "search", "spring", "farewell",
]
TITLES = [
    "The Hunt", "Arrival", "The Long Night", "Morning Count", "Smoke Signals", "The Lesson",
    "Stolen Cub", "The Storm Breaks", "Thin Ice", "Inspection", "The Den", "A Wedding",
    "Dry Season", "Crossing", "Fire on the Hill", "Letters Home", "The Ridge", "The Raid",
    "Judgement", "First Snow", "Ruins", "Checkpoint", "Flight", "The Search", "Thaw",
    "Goodbye", "Counting Sheep", "The Well", "Horse Lines", "The Road Out",
]
TITLES_ZH = ["狼群", "草原之夜", "风暴", "冰湖", "告别", "归途", "小狼", "火"]
SUBJECTS = ["The pack", "A lone wolf", "The wind", "Snow", "A horse", "Smoke", "The herd",
            "Dust", "A hawk", "The truck", "Rain", "The fire", "A dog", "The sheep"]
VERBS = ["moves through", "drifts across", "circles", "crosses", "settles over", "races along",
         "watches", "waits beside", "climbs toward", "slips past", "stops at", "turns from"]
OBJECTS = ["the tall grass", "the frozen lake", "the yurt", "the ridge", "the herd",
           "the camp", "the dark water", "the fence", "the road", "the horizon", "the fire",
           "the stove", "the gate", "the reeds", "the doorway"]
PEOPLE_VERBS = ["looks up at", "walks toward", "kneels by", "stares at", "turns away from",
                "reaches for", "listens to", "points at", "runs toward", "hides behind",
                "leans against", "pulls open"]
EXTRAS = ["breath steaming in the cold", "without a sound", "slowly", "as the light fades",
          "in single file", "against the wind", "half hidden", "for a long moment",
          "while the others sleep", "as thunder rolls far away", "hands shaking",
          "eyes narrowed against the glare"]
LINES = [
    "They're circling the herd.", "Stay down.", "Don't move.", "Listen.",
    "The wolves know we are here.", "How many did you count?", "Seven, maybe eight.",
    "We should go back before the storm.", "The old man says the wolves are the "
    "grassland's guardians.", "You think too much like a city boy.",
    "Give me the rifle.", "Not yet.", "If the lake freezes tonight, we lose the horses.",
    "I have never seen anything like it.", "Bring the lantern.",
    "The brigade wants the cubs taken before spring.", "That is not your decision.",
    "Tell them the road is closed.", "Where did you find him?", "He was alone by the river.",
    "Eat something, you haven't eaten all day.", "The sheep are restless tonight.",
    "I'll write to my mother tomorrow.", "Nobody will believe us.", "Quiet now.",
    "Do you hear that?", "It's only the wind.", "Come inside, it's freezing.",
    "We leave at first light, with or without the doctor.", "Keep the fire going.",
    "Bilgee was right about everything.", "The grass is the big life, everything else is "
    "the small life.", "Why did you bring it here?", "Because it would have died.",
    "Then it is ours to feed.", "Look at its eyes.", "Enough.",
    "The inspection team arrives on Monday.", "Hide the skins under the felt.",
    "You can't tame a wolf.", "I'm not trying to tame it.", "Then what are you doing?",
    "Run!", "Over there, by the rocks.", "Count them again.", "I said count them again.",
]
LINES_ZH = [
    "狼在围着羊群转。", "别动。", "你听。", "暴风雪要来了。", "这是草原的规矩。",
    "明天天一亮就走。", "它饿了。", "你不懂狼。", "快回去！", "我看见它了。",
]
PARENS = ["(quietly)", "(V.O.)", "(shouting)", "(to himself)", "(beat)", "(in Mongolian)"]
NOTES = ["reshoot if the horse misbehaves", "match the eyeline of the previous shot",
         "VFX: add breath in post", "pick-up shot", "check continuity of the scar"]
TAGS = ["vfx", "stunt", "pickup", "animal", "night_shoot", "crowd", "insert", "hero"]
# The services shots move steps to: keyframes to OpenAI or a ComfyUI workflow, clips to a
# ComfyUI video workflow (the installed adapters), with prices for `filmc plan`.
KEYFRAME_BACKENDS = ["openai", "comfyui", "local"]
CLIP_BACKENDS = ["comfy_video", "local"]
FILMC_TOML = """\
# Written by bench/make_film.py: every step on `local` unless a shot names a service.

[backends.openai]
type = "openai"
api_key_env = "OPENAI_API_KEY"
model = "gpt-image-1"
prices.keyframe = 0.17

[backends.comfyui]
type = "comfyui"
url = "http://127.0.0.1:8188"
workflow = "workflows/keyframe_api.json"
concurrency = 2
prices.keyframe = 0.0

[backends.comfy_video]
type = "comfyui"
url = ["http://127.0.0.1:8188", "http://127.0.0.1:8189"]
workflow_clip = "workflows/clip_api.json"
concurrency = 4
prices.clip = { per_second = 0.02 }
"""
# Minimal API-format workflows with the adapter's placeholders (no model weights named).
KEYFRAME_WORKFLOW = """\
{
  "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}",
        "batch_size": 1, "color": "{{seed}}"}},
  "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["1", 0]}},
  "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kf"}}
}
"""
CLIP_WORKFLOW = """\
{
  "1": {"class_type": "LoadImage", "inputs": {"image": "{{first_frame}}"}},
  "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["1", 0]}},
  "3": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": "{{fps}}"}},
  "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "clip",
        "format": "mp4", "codec": "h264"}}
}
"""
STRINGS = ['"shallow focus"', '"slight lens flare"', '"dust in the air"', '"breath visible"']
ANIMALS = ("ALPHA", "CUB")
COMMENTS = ["// TODO: tighten this beat", "// matches the storyboard panel",
            "// alternate take in the lock file", "// from the second draft",
            "// keep the eyeline consistent", "// 这里需要更多的风"]


# --- small helpers ---------------------------------------------------------------------------


def png(rgb: tuple[int, int, int], w: int = 16, h: int = 16) -> bytes:
    """A valid solid-colour RGB PNG, written without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * w
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * h, 9)) + chunk(b"IEND", b""))


def duration_text(rng: random.Random, seconds: float) -> str:
    """One of the duration forms for `seconds` (a multiple of 0.5)."""
    r = rng.random()
    if r < 0.55:
        return f"{seconds:g}s"
    if r < 0.72:
        whole = int(seconds)
        return f"0:{whole:02d}" if seconds == whole else f"0:{whole:02d}.5"
    if r < 0.95:
        return f"{int(seconds * FPS)}f"
    return f"{int(seconds * 1000)}ms"


# --- the generator -------------------------------------------------------------------------


class FilmWriter:
    def __init__(self, shots: int, seed: int, size: str = "1920x804") -> None:
        self.n = shots
        self.size = size
        self.rng = random.Random(seed)
        presets = read_presets()
        self.slots: dict[str, list[str]] = {}
        self.camera_bundles: list[str] = []
        for name, slot in presets["camera"].items():
            if slot is None:
                self.camera_bundles.append(name)
            else:
                self.slots.setdefault(slot, []).append(name)
        self.lights = list(presets["light"])
        self.styles = list(presets["style"])
        self.files: dict[str, bytes | str] = {}
        self.chars: list[tuple[str, str, list[str]]] = []  # id, short name, outfits
        self.locs: list[str] = []
        self.user_camera = ["hero", "ots_close"]
        self.user_light = ["dusk_dust"]
        self.user_style = ["wolf_totem"]

    # -- cast.film ------------------------------------------------------------------------

    def cast_file(self) -> str:
        rng = self.rng
        out = ["// Who and where: the characters, the places and this film's own presets.",
               "// Everything declared here is visible in every file of the film.", "",
               "use std.camera", "use std.light", "use std.style", ""]
        for i, (cid, name) in enumerate(FIRST):
            n_out = rng.choice((1, 1, 2, 2, 2, 3, 4))
            outfits = rng.sample(OUTFITS, n_out)
            out.append(f'character {cid} "{name}" {{')
            out.append(f'  look "{rng.choice(AGES)}, {rng.choice(FACES)}"')
            if i < 8:
                self._ref(out, f"refs/chars/{cid.lower()}_front.png", "  ")
            if cid not in ANIMALS:
                out.append(f'  voice "{rng.choice(VOICES)}"')
            for k, (oid, look) in enumerate(outfits):
                if k == 1 and i % 5 == 0:  # a few in block form
                    out.append(f'  outfit {oid} "{look}" {{')
                    if i < 15:
                        self._ref(out, f"refs/chars/{cid.lower()}_{oid}.png", "    ")
                    out.append(f'    note "{rng.choice(NOTES)}"')
                    out.append("  }")
                elif k == 2 and i % 7 == 0:
                    out.append(f"  outfit {oid} {{")
                    out.append(f'    look "{look}"')
                    out.append("  }")
                else:
                    out.append(f'  outfit {oid} "{look}"')
            if i < 6:
                out.append("  tags lead")
            elif cid in ANIMALS:
                out.append("  tags animal")
                out.append('  note "an animal: no voice, never speaks"')
            out.append("}")
            out.append("")
            self.chars.append((cid, name, [o for o, _ in outfits]))
        for i, (lid, name, look) in enumerate(PLACES):
            out.append(f'location {lid} "{name}" {{')
            out.append(f'  look "{look}"')
            if i < 6:
                self._ref(out, f"refs/places/{lid.lower()}.png", "  ")
            out.append(f"  light {rng.choice(self.lights)}")
            if i % 3 == 0:
                out.append("  at NIGHT {")
                out.append(f'    look "{look}, at night under the stars"')
                if i < 6:
                    self._ref(out, f"refs/places/{lid.lower()}_night.png", "    ")
                out.append(f"    light {'moonlight' if 'moonlight' in self.lights else self.lights[0]}")
                out.append("  }")
            if i % 4 == 1:
                out.append("  at DAWN {")
                out.append(f'    look "{look}, frost and mist at dawn"')
                out.append("  }")
            out.append(f"  tags {'interior' if i % 2 else 'exterior'}")
            out.append("}")
            out.append("")
            self.locs.append(lid)
        s = self.slots
        pick = lambda slot: s[slot][min(2, len(s[slot]) - 1)]  # noqa: E731
        out += [
            "// This film's own presets: bundles of the standard ones plus extra words.",
            "preset camera hero {",
            f"  camera {pick('size')} {pick('angle')} 35mm {pick('movement')}",
            '  prompt "heroic framing, sky behind the head"',
            "}", "",
            "preset camera ots_close {",
            f"  camera {s['size'][0]} {s['angle'][0]}",
            '  prompt "tight over-the-shoulder, the listener soft in the foreground"',
            "}", "",
            "preset light dusk_dust {",
            f"  light {self.lights[1 % len(self.lights)]} {self.lights[-2]}",
            '  prompt "dust kicked up by hooves glowing in the low sun"',
            "}", "",
            "preset style wolf_totem {",
            f"  style {self.styles[0]} {self.styles[2 % len(self.styles)]}",
            '  prompt "muted earth tones, ochre and slate, 1960s Inner Mongolia"',
            '  negative "bright saturated colours, modern clothing"',
            "}", "",
        ]
        return "\n".join(out)

    def _ref(self, out: list[str], rel: str, indent: str) -> None:
        rng = self.rng
        self.files[rel] = png((rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        out.append(f'{indent}ref "{rel}"')

    # -- shots ------------------------------------------------------------------------------

    def camera_line(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.03:
            return f"camera {rng.choice(self.camera_bundles + self.user_camera)}"
        parts = []
        for slot, p in (("size", 0.95), ("angle", 0.55), ("lens", 0.55), ("movement", 0.7)):
            if slot not in self.slots or rng.random() >= p:
                continue
            if slot == "lens" and rng.random() < 0.35:
                parts.append(f"{rng.choice((18, 24, 28, 35, 40, 50, 65, 85, 100, 135))}mm")
            else:
                parts.append(rng.choice(self.slots[slot]))
        if not parts:
            parts.append(rng.choice(self.slots["size"]))
        if rng.random() < 0.05:
            parts.append(rng.choice(STRINGS))
        return "camera " + " ".join(parts)

    def action(self, cast: list[tuple[str, str, str]]) -> str:
        rng = self.rng
        sentences = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            if cast and rng.random() < 0.7:
                who = rng.choice(cast)[1]
                s = f"{who} {rng.choice(PEOPLE_VERBS)} {rng.choice(OBJECTS)}"
            else:
                s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            if rng.random() < 0.5:
                s += f", {rng.choice(EXTRAS)}"
            sentences.append(s[0].upper() + s[1:] + ".")
        return " ".join(sentences)

    def dialogue(self, cast: list[tuple[str, str, str]], seconds: float) -> list[str]:
        rng = self.rng
        budget = seconds * 0.95
        speakers = [c for c in cast if c[0] not in ANIMALS]
        out: list[str] = []
        last = ""
        if not speakers:
            return out
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            zh = rng.random() < 0.05
            pool = LINES_ZH if zh else LINES
            fits = [t for t in pool if speaking_time(t) <= budget]
            if not fits:
                break
            text = rng.choice(fits)
            budget -= speaking_time(text)
            who = rng.choice([c for c, _, _ in speakers if c != last] or [last])
            last = who
            paren = f" {rng.choice(PARENS)}" if rng.random() < 0.08 else ""
            out.append(f'{who}{paren}: "{text}"')
        return out

    def shot(self, sid: str, ensemble: list[tuple[str, str, str]],
             scene_cast: list[tuple[str, str, str]] | None, scene_dur: float | None) -> list[str]:
        rng = self.rng
        talks = bool(ensemble) and rng.random() < 0.35
        seconds = rng.choice((2, 2.5, 3, 3, 3.5, 4, 4, 4.5, 5, 6, 8) if talks
                             else (1, 1.5, 1.5, 2, 2, 2, 2.5, 2.5, 3, 3, 3.5, 4, 5, 6))
        header = f"  shot {sid} {duration_text(rng, seconds)} {{"
        if scene_dur is not None and rng.random() < 0.5:
            seconds = scene_dur
            header = f"  shot {sid} {{"
        lines = [header, "    " + self.camera_line()]
        if rng.random() < 0.8:
            light = rng.sample(self.lights, rng.choice((1, 1, 1, 2)))
            if rng.random() < 0.05:
                light = [rng.choice(self.user_light)]
            if rng.random() < 0.08:
                light.append(rng.choice(STRINGS))
            lines.append("    light " + " ".join(light))
        if rng.random() < 0.06:
            lines.append(f"    style {rng.choice(self.styles + self.user_style)}")
        cast = scene_cast
        if scene_cast is None or rng.random() < 0.3:
            k = min(len(ensemble), rng.choice((0, 1, 1, 2, 2, 2, 3, 4)))
            cast = rng.sample(ensemble, k)
            if cast:
                lines.append("    cast " + ", ".join(f"{c}({o})" if o else c for c, _, o in cast))
        lines.append(f'    action "{self.action(cast or [])}"')
        if rng.random() < 0.07:
            lines.append(f"    takes {rng.choice((2, 3, 4, 6, 8))}")
        if rng.random() < 0.04:
            lines.append(f"    seed {rng.randrange(1, 2**31)}")
        if rng.random() < 0.05:
            lines.append("    tags " + " ".join(rng.sample(TAGS, rng.choice((1, 2)))))
        if rng.random() < 0.04:
            lines.append(f'    note "{rng.choice(NOTES)}"')
        if rng.random() < 0.03:
            lines.append(f"    backend clip {rng.choice(CLIP_BACKENDS)}")
        if rng.random() < 0.02:
            lines.append(f"    backend keyframe {rng.choice(KEYFRAME_BACKENDS)}")
        if talks and cast:
            lines += ["    " + d for d in self.dialogue(cast, seconds)]
        if rng.random() < 0.03:
            lines.insert(1, "    " + rng.choice(COMMENTS))
        lines.append("  }")
        return lines

    def scene(self, scid: str, n_shots: int, title: str) -> list[str]:
        rng = self.rng
        loc = rng.choice(self.locs)
        setting = rng.choice(("EXT", "EXT", "INT", "INT", "INT/EXT"))
        time_ = rng.choice(("DAY", "DAY", "NIGHT", "NIGHT", "DUSK", "DAWN", "MORNING",
                            "AFTERNOON", "GOLDEN_HOUR", "CONTINUOUS", "LATER", None))
        slug = f"{setting} {loc}" + (f" {time_}" if time_ else "")
        out = []
        if rng.random() < 0.3:
            out.append(rng.choice(COMMENTS))
        out.append(f'scene {scid} "{title}" {slug} {{')
        people = rng.sample(self.chars, rng.choice((1, 2, 2, 3, 3, 4, 5, 6)))
        ensemble = [(c, short, rng.choice(outfits) if rng.random() < 0.9 else "")
                    for c, short, outfits in people]
        scene_dur = None
        if rng.random() < 0.1:
            scene_dur = rng.choice((2, 3, 4))
            out.append(f"  duration {scene_dur}s")
        scene_cast = None
        if rng.random() < 0.1:
            scene_cast = ensemble[: min(2, len(ensemble))]
            out.append("  cast " + ", ".join(f"{c}({o})" if o else c for c, _, o in scene_cast))
        if rng.random() < 0.15:
            out.append(f"  light {rng.choice(self.lights)}")
        if rng.random() < 0.05:
            out.append(f"  style {rng.choice(self.styles)}")
        if rng.random() < 0.05:
            out.append(f"  takes {rng.choice((2, 3))}")
        if len(out) > 1 and not out[-1].startswith("scene"):
            out.append("")
        for k in range(n_shots):
            if k:
                out.append("")
            out += self.shot(f"{scid}_{k + 1:02d}", ensemble, scene_cast, scene_dur)
        out.append("}")
        return out

    def part(self, index: int, name: str, n_shots: int) -> str:
        rng = self.rng
        out = [f"// Sequence {index}: {name.replace('_', ' ')}.", ""]
        left, k = n_shots, 0
        while left > 0:
            size = min(left, rng.randint(5, 40))
            if 0 < left - size < 5:
                size = left
            k += 1
            title = rng.choice(TITLES_ZH) if rng.random() < 0.05 else rng.choice(TITLES)
            out += self.scene(f"{name}_{k}", size, title)
            out.append("")
            left -= size
        return "\n".join(out)

    # -- the whole film ---------------------------------------------------------------------------

    def build(self) -> dict[str, bytes | str]:
        rng = self.rng
        self.files["cast.film"] = self.cast_file()
        n_parts = max(1, round(self.n / 100))
        sizes = [self.n // n_parts] * n_parts
        for i in range(self.n % n_parts):
            sizes[i] += 1
        for i in range(n_parts - 1):  # some sequences run longer than others
            d = rng.randint(-20, 20)
            d = max(-(sizes[i] - 1), min(d, sizes[i + 1] - 1))
            sizes[i] += d
            sizes[i + 1] -= d
        parts = []
        for i, n in enumerate(sizes):
            base = SEQUENCES[i % len(SEQUENCES)]
            name = base if i < len(SEQUENCES) else f"{base}_{i // len(SEQUENCES) + 1}"
            rel = f"seq/{i + 1:02d}_{name}.film"
            self.files[rel] = self.part(i + 1, name, n)
            parts.append(rel)
        head = [
            f"// A synthetic feature of {self.n} shots, written by bench/make_film.py.",
            "// Regenerate it rather than editing it.", "",
            "use std.camera", "use std.light", "use std.style", 'use "cast.film"', "",
            'film "The Long Steppe" {', "  aspect 2.39:1", f"  size {self.size}", "  fps 24",
            '  language "en"', "  style wolf_totem",
            '  negative "modern buildings, power lines, text, watermark"', "  takes 2",
            *(f'  part "{p}"' for p in parts), "}", "",
        ]
        self.files["film.film"] = "\n".join(head)
        self.files["filmc.toml"] = FILMC_TOML
        self.files["workflows/keyframe_api.json"] = KEYFRAME_WORKFLOW
        self.files["workflows/clip_api.json"] = CLIP_WORKFLOW
        return self.files


def write_film(out: Path, shots: int = 3000, seed: int = 1, size: str = "1920x804") -> Path:
    """Write the film into `out` and return the path of its main file."""
    files = FilmWriter(shots, seed, size).build()
    out.mkdir(parents=True, exist_ok=True)
    seq = out / "seq"
    if seq.is_dir():  # parts of an earlier, longer film
        for old in seq.glob("*.film"):
            if f"seq/{old.name}" not in files:
                old.unlink()
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    return out / "film.film"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write a synthetic feature film for benchmarks.")
    p.add_argument("--shots", type=int, default=3000, help="how many shots (default 3000)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"the folder to write (default {DEFAULT_OUT.relative_to(HERE.parent)})")
    p.add_argument("--seed", type=int, default=1, help="the random seed (default 1)")
    p.add_argument("--size", default="1920x804",
                   help="the frame size (default 1920x804; small sizes build fast)")
    args = p.parse_args(argv)
    if args.shots < 1:
        p.error("--shots must be at least 1")
    started = time.perf_counter()
    main_file = write_film(args.out, args.shots, args.seed, args.size)
    print(f"wrote {main_file} ({args.shots} shots) in "
          f"{(time.perf_counter() - started) * 1000:.0f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
