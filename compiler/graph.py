"""IR → step graph: every image, clip and sound the film needs, with content keys.

The graph is a networkx DiGraph; edges run from dependency to dependent; node
ids are the printed form of each step's `StepId` (lang/steps.py):

    sheet.CHEN.winter          the character sheet of CHEN in the winter outfit
    plate.STEPPE.NIGHT         the location plate of STEPPE at NIGHT
    keyframe.hunt.chen.take2   take 2 of shot `chen` of scene `hunt`, as a still
    clip.hunt.chen.take2       that take as video
    speech.hunt.chen.1         the shot's first line of dialogue, as audio
    shot.hunt.chen             the chosen take, conformed, with its audio
    film                       all shots joined
    subtitles timeline storyboard   the side outputs

Every node carries `kind`, `scene`, `shot`, `characters` (what selection reads)
and `step`, a `Step`: its typed id, its request `fields` (prompt, seed,
size...), the `params` only the animatic draws from, its inputs tagged with the
part each plays (a character's sheet, the first frame...), and its content key.
Keys are computed in dependency order as the graph is built, so each covers
its inputs' keys (a Merkle tree); what else enters a key is the backend
adapter's to say (compiler/backends.py, compiler/keys.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import attrs
import networkx as nx

from ..lang import steps as S
from ..lang.steps import Addressed, Fields, InputRef, StepId, Tags
from . import ir
from .backends import BackendInfo
from .keys import step_key
from .templates import Templates


@attrs.frozen(eq=False)
class Step(Addressed):
    sid: StepId
    backend: str | None  # None: nothing to generate (the user's own reference files)
    characters: frozenset[str]
    template: str | None  # the template's path, when a template rendered the prompt
    fields: Fields
    params: dict[str, Any]
    inputs: tuple[InputRef, ...]
    files: tuple[ir.RefFile, ...]  # the user's own images it reads
    key: str
    record: dict[str, Any] = attrs.field(repr=False)  # what the key hashes, for `plan`

    @property
    def prompt(self) -> str:
        return self.fields.prompt


class GraphError(Exception):
    pass


_NO_FIELDS = Fields()


class _Builder:
    def __init__(self, film: ir.Film, templates: Templates, choose: Callable[[str], str],
                 infos: Mapping[str, BackendInfo]) -> None:
        self.film = film
        self.templates = templates
        self.choose = choose
        self.infos = infos
        self.g = nx.DiGraph()
        self.keys: dict[str, str] = {}
        # renders by (template, context object); the value keeps the context alive so
        # that its id is never reused by another dict
        self._rendered: dict[tuple[int, int], tuple[object, dict, str]] = {}
        self._speech: dict[tuple, dict] = {}
        self._chars = {c.id: c for c in film.characters}
        self._locs = {loc.id: loc for loc in film.locations}
        self._backend_keys: dict[tuple[str, str], dict] = {}
        self.burn_subtitles = False

    def render(self, t: Any, ctx: dict) -> str:
        """Render once per template and context object: every take of a shot shares its
        prompt, and lines with the same voice and direction share theirs."""
        k = (id(t), id(ctx))
        hit = self._rendered.get(k)
        if hit is None:
            hit = self._rendered[k] = (t, ctx, t.render(ctx))
        return hit[2]

    def backend_key(self, name: str, kind: str) -> dict:
        k = (name, kind)
        found = self._backend_keys.get(k)
        if found is None:
            found = self._backend_keys[k] = self.infos[name].key(kind)
        return found

    def add(self, sid: StepId, backend: str | None, *, characters: frozenset[str] = frozenset(),
            template: tuple[str, dict] | None = None, into: str = "prompt",
            fields: Fields = _NO_FIELDS, params: dict[str, Any] | None = None,
            inputs: tuple[InputRef, ...] = (), files: tuple[ir.RefFile, ...] = ()) -> str:
        """Add a step; `template` (name, context) renders the field named `into`."""
        id = str(sid)
        if id in self.keys:
            return id
        tmpl_path, tmpl_digest = None, None
        if template is not None:
            t = self.templates.get(template[0], backend)
            fields = attrs.evolve(fields, **{into: self.render(t, template[1])})  # type: ignore[arg-type]
            tmpl_path, tmpl_digest = t.path, t.digest
        params = params or {}
        input_keys = [self.keys[i.step] for i in inputs]
        material: dict[str, Any] = {"kind": sid.kind}
        if backend is not None:
            info = self.infos[backend]
            keyed = info.fields(sid.kind)
            material["adapter"] = self.backend_key(backend, sid.kind)
            values = fields.as_dict()
            material.update((name, values[name]) for name in S.FIELD_NAMES if name in keyed)
            if into in keyed and tmpl_digest is not None:
                material["template"] = tmpl_digest
            if "params" in keyed:
                material["params"] = params
            per_request = info.adapter.key_request(sid.kind, info.settings, fields)
            if per_request:
                material["request"] = dict(per_request)
        # Each input by its key, and the part it plays and what it shows: an adapter may
        # tell the service ("Image 1 shows CHEN (winter outfit)").
        material["inputs"] = [[k, i.role, _shown(i.tags)] for i, k in zip(inputs, input_keys)]
        material["files"] = [f.digest for f in files]
        key = step_key(material)
        record = {**material, "backend": backend,
                  "inputs": {i.step: k for i, k in zip(inputs, input_keys)},
                  "files": {f.path: f.digest for f in files}}
        step = Step(sid, backend, characters, tmpl_path, fields, params, inputs, files, key, record)
        self.keys[id] = key
        self.g.add_node(id, kind=sid.kind, scene=sid.scene, shot=sid.shot, characters=characters,
                        step=step)
        for i in inputs:
            self.g.add_edge(i.step, id)
        return id

    # -- references: sheets and plates -------------------------------------------------------

    def sheet(self, member: ir.CastMember) -> str:
        c = self._chars[member.character]
        outfit = c.outfit(member.outfit)
        sid = StepId.sheet(c.id, outfit.name if outfit else None)
        if str(sid) in self.keys:
            return str(sid)
        given = outfit.refs if outfit and outfit.refs else (c.refs if outfit is None else ())
        chars = frozenset({c.id})
        if given:
            return self.add(sid, None, characters=chars, files=given)
        ctx = {"character": {"look": c.look}, "outfit": outfit.look if outfit else "",
               "style": list(self.film.style.words)}
        return self.add(sid, self.choose("sheet"), characters=chars, template=("sheet", ctx),
                        fields=Fields(width=self.film.width, height=self.film.height),
                        params={"panel": {"character": c.id,
                                          "outfit": outfit.name if outfit else None}},
                        files=c.refs)

    def plate(self, loc_id: str, time: str | None) -> str:
        loc = self._locs[loc_id]
        tv = loc.at(time)
        sid = StepId.plate(loc.id, time)
        if str(sid) in self.keys:
            return str(sid)
        # The user's images when they show this time of day; otherwise generate the plate,
        # with the location's own images as references.
        given = tv.refs if tv and tv.refs else (loc.refs if time is None else ())
        if given:
            return self.add(sid, None, files=given)
        ctx = {"location": self._location_ctx(loc, time), "style": list(self.film.style.words)}
        return self.add(sid, self.choose("plate"), template=("plate", ctx),
                        fields=Fields(width=self.film.width, height=self.film.height),
                        params={"panel": {"location": loc.id, "time": time}}, files=loc.refs)

    @staticmethod
    def _location_ctx(loc: ir.Location, time: str | None) -> dict:
        tv = loc.at(time)
        time_look = tv.look if tv and tv.look else (_TIME_WORDS.get(time, time.lower()) if time else "")
        return {"look": loc.look, "time_look": time_look}

    # -- a shot ------------------------------------------------------------------------------------

    def shot(self, shot: ir.Shot) -> str:
        film = self.film
        chars = frozenset(m.character for m in shot.cast)
        refs = tuple(InputRef(self.sheet(m), S.CHARACTER, Tags(m.character, m.outfit))
                     for m in shot.cast)
        loc = self._locs.get(shot.location) if shot.location else None
        if loc is not None:
            refs += (InputRef(self.plate(loc.id, shot.time), S.LOCATION,
                              Tags(location=loc.id, time=shot.time)),)
        cast_ctx = [{"look": self._chars[m.character].look,
                     "outfit": o.look if (o := self._chars[m.character].outfit(m.outfit)) else ""}
                    for m in shot.cast]
        negative = ", ".join(w for w in (shot.negative, *shot.camera.look.negative,
                                         *shot.light.negative, *shot.style.negative) if w)
        kf_ctx = {"shot": {"action": shot.action}, "cast": cast_ctx,
                  "location": self._location_ctx(loc, shot.time) if loc else None,
                  "camera": list(shot.camera.look.words), "light": list(shot.light.words),
                  "style": list(shot.style.words)}
        clip_ctx = {"shot": {"action": shot.action}, "movement": shot.camera.movement_words,
                    "style": list(shot.style.words)}
        motion = dict(shot.camera.look.params)
        kf_params = {"camera": motion, "light": dict(shot.light.params),
                     "style": dict(shot.style.params), "cast": [m.character for m in shot.cast],
                     "panel": {"scene": shot.scene, "shot": shot.id, "location": shot.location,
                               "time": shot.time, "action": shot.action}}
        for take in range(1, shot.takes + 1):
            seed = None if shot.seed is None else shot.seed + take - 1
            kf = self.add(StepId.keyframe(shot.scene, shot.id, take), shot.backend("keyframe"),
                          template=("keyframe", kf_ctx),
                          fields=Fields(negative=negative, seed=seed, width=film.width,
                                        height=film.height, take=take),
                          params=kf_params, inputs=refs, characters=chars)
            self.add(StepId.clip(shot.scene, shot.id, take), shot.backend("clip"),
                     template=("clip", clip_ctx),
                     fields=Fields(seed=seed, width=film.width, height=film.height, fps=film.fps,
                                   duration=shot.duration, take=take),
                     params={"camera": motion}, inputs=(InputRef(kf, S.FIRST_FRAME),), characters=chars)
        speech = []
        for line in shot.lines:
            who = self._chars[line.speaker]
            ctx = self._speech.setdefault((who.voice, line.paren), {"voice": who.voice,
                                                                     "paren": line.paren or ""})
            # The speech template renders the voice and the line's direction.
            sid = self.add(StepId.speech(shot.scene, shot.id, line.index), shot.backend("speech"),
                           template=("speech", ctx), into="voice",
                           fields=Fields(text=line.text, speaker=line.speaker,
                                         language=line.language), characters=chars)
            speech.append(InputRef(sid, S.SPEECH, Tags(start=line.start, end=line.end)))
        chosen = 1  # `filmc pick` and the lock file choose another take (a later issue)
        return self.add(StepId.of_shot(shot.scene, shot.id), shot.backend("shot"),
                        fields=Fields(width=film.width, height=film.height, fps=film.fps,
                                      duration=shot.duration),
                        params={"take": chosen,
                                "lines": [[line.start, line.end] for line in shot.lines]},
                        inputs=(InputRef(str(StepId.clip(shot.scene, shot.id, chosen)), S.CLIP),
                                *speech), characters=chars)

    # -- the film and the side outputs -------------------------------------------------------------

    def build(self) -> nx.DiGraph:
        film = self.film
        shots: list[InputRef] = []
        chapters: list[list] = []
        lines: list[list] = []
        rows: list[list] = []
        t = Fraction(0)
        for scene in film.scenes:
            chapters.append([scene.title, t])
            for shot in scene.shots:
                shots.append(InputRef(self.shot(shot), S.SHOT))
                for line in shot.lines:
                    lines.append([t + line.start, t + line.end, line.text])
                rows.append([shot.scene, shot.id, shot.duration])
                t += shot.duration
        size = Fields(width=film.width, height=film.height, fps=film.fps)
        subs = self.add(StepId("subtitles"), self.choose("subtitles"), params={"lines": lines})
        # The film carries the subtitles as a track (or burnt into the picture).
        self.add(StepId("film"), self.choose("film"), fields=size,
                 params={"chapters": chapters, "burn_subtitles": self.burn_subtitles},
                 inputs=(*shots, InputRef(subs, S.SUBTITLES)))
        self.add(StepId("timeline"), self.choose("timeline"), fields=size,
                 params={"shots": rows})
        boards = tuple(InputRef(str(StepId.keyframe(s.scene, s.id, 1)), S.PANEL,
                                Tags(label=f"{s.scene}/{s.id}")) for s in film.shots)
        self.add(StepId("storyboard"), self.choose("storyboard"), inputs=boards)
        if not nx.is_directed_acyclic_graph(self.g):
            cycle = [u for u, _ in nx.find_cycle(self.g)]
            raise GraphError("the step graph has a cycle: " + " --> ".join(cycle + cycle[:1]))
        return self.g


_NO_TAGS = Tags()


def _shown(tags: Tags) -> dict[str, Any]:
    if tags == _NO_TAGS:
        return {}
    return {k: v for k, v in attrs.asdict(tags, recurse=False).items() if v is not None}


_TIME_WORDS = {"DAWN": "at dawn", "SUNRISE": "at sunrise", "MORNING": "in the morning",
               "DAY": "in daylight", "NOON": "at noon", "AFTERNOON": "in the afternoon",
               "GOLDEN_HOUR": "at golden hour", "SUNSET": "at sunset", "DUSK": "at dusk",
               "EVENING": "in the evening", "NIGHT": "at night", "MIDNIGHT": "at midnight"}


def build_graph(film: ir.Film, templates: Templates, choose: Callable[[str], str],
                infos: Mapping[str, BackendInfo], burn_subtitles: bool = False) -> nx.DiGraph:
    """The step graph of a film, every node keyed.  `choose(kind)`: the backend of the
    film-wide steps of `kind` (a shot's own steps name theirs in the IR)."""
    builder = _Builder(film, templates, choose, infos)
    builder.burn_subtitles = burn_subtitles
    return builder.build()
