"""IR → step graph: every image, clip and sound the film needs, with content keys.

The graph is a networkx DiGraph; edges run from dependency to dependent; node
ids read like addresses:

    sheet.CHEN.winter          the character sheet of CHEN in the winter outfit
    plate.STEPPE.NIGHT         the location plate of STEPPE at NIGHT
    keyframe.hunt.chen.take2   take 2 of shot `chen` of scene `hunt`, as a still
    clip.hunt.chen.take2       that take as video
    speech.hunt.chen.1         the shot's first line of dialogue, as audio
    shot.hunt.chen             the chosen take, conformed, with its audio
    film                       all shots joined
    subtitles timeline storyboard   the side outputs

Every node carries `kind`, `scene`, `shot`, `characters` (what selection
reads) and `step`, a `Step` with the rendered prompt, parameters, inputs and
content key.  Keys are computed in dependency order as the graph is built, so
each key covers its inputs' keys (a Merkle tree).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import attrs
import networkx as nx

from . import ir
from .keys import step_key
from .templates import Templates

SIDE_OUTPUTS = ("subtitles", "timeline", "storyboard")
ALL_KINDS = ("sheet", "plate", "keyframe", "clip", "speech", "shot", "film", *SIDE_OUTPUTS)


@attrs.frozen(eq=False)
class Step:
    id: str
    kind: str
    backend: str | None  # None: nothing to generate (the user's own reference files)
    scene: str | None
    shot: str | None
    characters: frozenset[str]
    template: str | None  # the template's path, when a template rendered the prompt
    prompt: str
    params: dict
    inputs: tuple[str, ...]
    files: tuple[ir.RefFile, ...]
    key: str
    record: dict = attrs.field(repr=False)  # what the key hashes, for `plan` and `explain`


class GraphError(Exception):
    pass


class _Builder:
    def __init__(self, film: ir.Film, templates: Templates, default_backend: Callable[[str], str],
                 settings: Callable[[str], dict]) -> None:
        self.film = film
        self.templates = templates
        self.default_backend = default_backend
        self.settings = settings
        self.g = nx.DiGraph()
        self.keys: dict[str, str] = {}
        # renders by (template, context object); the value keeps the context alive so
        # that its id is never reused by another dict
        self._rendered: dict[tuple[int, int], tuple[object, dict, str]] = {}
        self._speech: dict[tuple, str] = {}
        self._chars = {c.id: c for c in film.characters}
        self.burn_subtitles = False
        self._locs = {loc.id: loc for loc in film.locations}

    def local(self, backend: str | None) -> bool:
        """Whether a backend is the built-in animatic renderer: labels drawn on its panels
        (shot id, location, character id) change its output, so they enter its params;
        for a real service they change nothing and stay out of the key."""
        return backend is not None and self.settings(backend).get("type") == "local"

    def render(self, t, ctx: dict) -> str:
        """Render once per template and context object: every take of a shot shares its
        prompt, and lines with the same voice and direction share theirs."""
        k = (id(t), id(ctx))
        hit = self._rendered.get(k)
        if hit is None:
            hit = self._rendered[k] = (t, ctx, t.render(ctx))
        return hit[2]

    def add(self, id: str, kind: str, backend: str | None, *, scene: str | None = None,
            shot: str | None = None, characters: frozenset[str] = frozenset(),
            template: tuple[str, dict] | None = None, params: dict | None = None,
            inputs: tuple[str, ...] = (), files: tuple[ir.RefFile, ...] = ()) -> None:
        if id in self.keys:
            return
        prompt, tmpl_path, tmpl_digest = "", None, None
        if template is not None:
            t = self.templates.get(template[0], backend)
            prompt, tmpl_path, tmpl_digest = self.render(t, template[1]), t.path, t.digest
        params = params or {}
        input_keys = [self.keys[i] for i in inputs]
        digests = [f.digest for f in files]
        settings = self.settings(backend) if backend else {}
        key = step_key(kind, settings, tmpl_digest, prompt, params, input_keys, digests)
        record = {"kind": kind, "backend": backend, "settings": settings, "template": tmpl_digest,
                  "prompt": prompt, "params": params, "inputs": dict(zip(inputs, input_keys)),
                  "files": {f.path: f.digest for f in files}}
        step = Step(id, kind, backend, scene, shot, characters, tmpl_path, prompt, params, inputs,
                    files, key, record)
        self.keys[id] = key
        self.g.add_node(id, kind=kind, scene=scene, shot=shot, characters=characters, step=step)
        for i in inputs:
            self.g.add_edge(i, id)

    # -- references: sheets and plates -------------------------------------------------------

    def sheet(self, member: ir.CastMember) -> str:
        c = self._chars[member.character]
        outfit = c.outfit(member.outfit)
        id = f"sheet.{c.id}" + (f".{outfit.name}" if outfit else "")
        if id in self.keys:
            return id
        given = outfit.refs if outfit and outfit.refs else (c.refs if outfit is None else ())
        chars = frozenset({c.id})
        if given:
            self.add(id, "sheet", None, characters=chars, files=given, params={"provided": True})
        else:
            backend = self.default_backend("sheet")
            ctx = {"character": {"look": c.look}, "outfit": outfit.look if outfit else "",
                   "style": list(self.film.style.words)}
            params = {"width": self.film.width, "height": self.film.height}
            if self.local(backend):
                params["panel"] = {"character": c.id, "outfit": outfit.name if outfit else None}
            self.add(id, "sheet", backend, characters=chars, template=("sheet", ctx),
                     params=params, files=c.refs)
        return id

    def plate(self, loc_id: str, time: str | None) -> str:
        loc = self._locs[loc_id]
        tv = loc.at(time)
        id = f"plate.{loc.id}" + (f".{time}" if time else "")
        if id in self.keys:
            return id
        # The user's images when they show this time of day; otherwise generate the plate,
        # with the location's own images as references.
        given = tv.refs if tv and tv.refs else (loc.refs if time is None else ())
        if given:
            self.add(id, "plate", None, files=given, params={"provided": True})
        else:
            ctx = {"location": self._location_ctx(loc, time), "style": list(self.film.style.words)}
            backend = self.default_backend("plate")
            params = {"width": self.film.width, "height": self.film.height}
            if self.local(backend):
                params["panel"] = {"location": loc.id, "time": time}
            self.add(id, "plate", backend, template=("plate", ctx), params=params, files=loc.refs)
        return id

    @staticmethod
    def _location_ctx(loc: ir.Location, time: str | None) -> dict:
        tv = loc.at(time)
        time_look = tv.look if tv and tv.look else (_TIME_WORDS.get(time, time.lower()) if time else "")
        return {"look": loc.look, "time_look": time_look}

    # -- a shot ------------------------------------------------------------------------------------

    def shot(self, shot: ir.Shot) -> str:
        film = self.film
        base = f"{shot.scene}.{shot.id}"
        chars = frozenset(m.character for m in shot.cast)
        where = {"scene": shot.scene, "shot": shot.id, "characters": chars}
        refs = tuple(self.sheet(m) for m in shot.cast)
        loc = self._locs.get(shot.location) if shot.location else None
        if loc is not None:
            refs += (self.plate(loc.id, shot.time),)
        cast_ctx = [{"look": self._chars[m.character].look,
                     "outfit": o.look if (o := self._chars[m.character].outfit(m.outfit)) else ""}
                    for m in shot.cast]
        negative = [w for w in (shot.negative, *shot.camera.look.negative, *shot.light.negative,
                                *shot.style.negative) if w]
        kf_ctx = {"shot": {"action": shot.action}, "cast": cast_ctx,
                  "location": self._location_ctx(loc, shot.time) if loc else None,
                  "camera": list(shot.camera.look.words), "light": list(shot.light.words),
                  "style": list(shot.style.words)}
        clip_ctx = {"shot": {"action": shot.action}, "movement": shot.camera.movement_words,
                    "style": list(shot.style.words)}
        size = {"width": film.width, "height": film.height}
        motion = dict(shot.camera.look.params)
        light = dict(shot.light.params)
        style = dict(shot.style.params)
        kf_backend = shot.backend("keyframe")
        panel = ({"scene": shot.scene, "shot": shot.id, "location": shot.location,
                  "time": shot.time, "action": shot.action} if self.local(kf_backend) else None)
        for take in range(1, shot.takes + 1):
            seed = None if shot.seed is None else shot.seed + take - 1
            kf = f"keyframe.{base}.take{take}"
            params = {**size, "seed": seed, "take": take, "negative": negative,
                      "camera": motion, "light": light, "style": style,
                      "cast": [m.character for m in shot.cast]}
            if panel is not None:
                params["panel"] = panel
            self.add(kf, "keyframe", kf_backend, template=("keyframe", kf_ctx), params=params,
                     inputs=(*refs,), **where)
            self.add(f"clip.{base}.take{take}", "clip", shot.backend("clip"),
                     template=("clip", clip_ctx),
                     params={**size, "seed": seed, "take": take, "duration": shot.duration,
                             "fps": film.fps, "camera": motion},
                     inputs=(kf,), **where)
        speech = []
        for line in shot.lines:
            sid = f"speech.{base}.{line.index}"
            who = self._chars[line.speaker]
            ctx = self._speech.setdefault((who.voice, line.paren), {"voice": who.voice,
                                                                     "paren": line.paren or ""})
            self.add(sid, "speech", shot.backend("speech"), template=("speech", ctx),
                     params={"text": line.text, "speaker": line.speaker, "language": line.language},
                     **where)
            speech.append(sid)
        chosen = 1  # `filmc pick` and the lock file choose another take (a later issue)
        sid = f"shot.{base}"
        self.add(sid, "shot", shot.backend("shot"),
                 params={**size, "fps": film.fps, "duration": shot.duration, "take": chosen,
                         "lines": [[line.start, line.end] for line in shot.lines]},
                 inputs=(f"clip.{base}.take{chosen}", *speech), **where)
        return sid

    # -- the film and the side outputs -------------------------------------------------------------

    def build(self) -> nx.DiGraph:
        film = self.film
        shots: list[str] = []
        chapters, lines, rows = [], [], []
        t = Fraction(0)
        for scene in film.scenes:
            chapters.append([scene.title, t])
            for shot in scene.shots:
                shots.append(self.shot(shot))
                for line in shot.lines:
                    lines.append([t + line.start, t + line.end, line.text])
                rows.append([shot.scene, shot.id, shot.duration])
                t += shot.duration
        size = {"width": film.width, "height": film.height, "fps": film.fps}
        self.add("subtitles", "subtitles", "local", params={"lines": lines})
        # The film carries the subtitles as a track (or burnt into the picture).
        self.add("film", "film", self.default_backend("film"),
                 params={**size, "chapters": chapters, "burn_subtitles": self.burn_subtitles},
                 inputs=(*shots, "subtitles"))
        self.add("timeline", "timeline", "local", params={**size, "shots": rows})
        boards = tuple(f"keyframe.{s.scene}.{s.id}.take1" for s in film.shots)
        self.add("storyboard", "storyboard", "local", params={"shots": [r[:2] for r in rows]},
                 inputs=boards)
        if not nx.is_directed_acyclic_graph(self.g):
            cycle = [u for u, _ in nx.find_cycle(self.g)]
            raise GraphError("the step graph has a cycle: " + " --> ".join(cycle + cycle[:1]))
        return self.g


_TIME_WORDS = {"DAWN": "at dawn", "SUNRISE": "at sunrise", "MORNING": "in the morning",
               "DAY": "in daylight", "NOON": "at noon", "AFTERNOON": "in the afternoon",
               "GOLDEN_HOUR": "at golden hour", "SUNSET": "at sunset", "DUSK": "at dusk",
               "EVENING": "in the evening", "NIGHT": "at night", "MIDNIGHT": "at midnight"}


def build_graph(film: ir.Film, templates: Templates,
                default_backend: Callable[[str], str] = lambda kind: "local",
                settings: Callable[[str], dict] = lambda backend: {"type": backend},
                burn_subtitles: bool = False) -> nx.DiGraph:
    """The step graph of a film, every node keyed."""
    builder = _Builder(film, templates, default_backend, settings)
    builder.burn_subtitles = burn_subtitles
    return builder.build()
