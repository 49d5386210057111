"""IR → step graph: every image, clip and sound the film needs, with content keys.

The graph is a networkx DiGraph; edges run from dependency to dependent; node
ids are the printed form of each step's `StepId` (lang/steps.py):

    sheet.CHEN                 CHEN's own reference sheet (the face)
    sheet.CHEN.winter          CHEN in the winter outfit
    plate.STEPPE.NIGHT         the location plate of STEPPE at NIGHT
    keyframe.hunt.chen.openai-2  candidate 2 on `openai` of shot `chen` of scene `hunt`
    keyframe.hunt.chen.retouch-1 an image the user added (`filmc take add`)
    clip.hunt.chen.take2       take 2 of the shot's motion, from its picked keyframe
    lastframe.hunt.chen        the last frame of the picked clip of the shot before
                               (`first_frame previous`): where this shot's clips start
    speech.hunt.chen.1         the shot's first line of dialogue, as audio
    shot.hunt.chen             the picked clip, conformed, with its audio
    music.hunt sfx.hunt.ambience sfx.hunt.chen.1   the sound cues (compiler/sound.py)
    mix                        the film's sound: every line and cue, mixed, with stems
    film                       all shots joined, with the mix
    subtitles timeline         the side outputs
    storyboard.hunt            the contact sheets of scene `hunt`: its shots' panels only,
                               so a shot's edit redraws its scene's pages and no other
    storyboard_index           every scene's title, shots and pages (names them, reads none)
    export.otio export.edl ...      the exports (compiler/exports.py)

Every node carries `kind`, `scene`, `shot`, `characters` (what selection reads)
and `step`, a `Step`: its typed id, its request `fields` (prompt, seed,
size...), the `params` only the animatic draws from, its inputs tagged with the
part each plays (a character's sheet, the first frame...), and its content key.

The lock (compiler/lock.py) decides which candidate a shot's clips start from
and which take the shot uses: the picked step is *pinned* to the digest the
lock records, the candidates passed over are marked `optional` (a build makes
them only when selected), and where a paid clip would be made from a candidate
nobody picked, the steps made from it *wait* (`Step.waits`) instead of running.
`graph.graph["picks"]` holds each shot's `ShotPicks`, for `plan`, `--select
status:` and the review page.
Keys are computed in dependency order as the graph is built, so each covers
its inputs' keys (a Merkle tree); what else enters a key is the backend
adapter's to say (compiler/backends.py, compiler/keys.py).  A process that
compiles the same film again (`filmc build --watch`) passes a `GraphMemo`, and
the steps of the shots whose inputs did not change are put back as they were,
not keyed again.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import partial
from typing import Any, TypeVar

import attrs
import networkx as nx

from ..lang import steps as S
from ..lang.steps import Addressed, Fields, InputRef, StepId, Tags
from . import ir
from .backends import BackendInfo
from .exports import ExportSetup, add_exports
from .keys import Spliced, canonical, step_key
from .lock import CONTINUES, LOCK_NAME, STALE, UNPICKED, Choice, Lock, ShotPicks, resolve
from .passes import time_lines
from .sound import DEFAULT_LOUDNESS, add_mix
from .templates import TemplateError, Templates

T = TypeVar("T")


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
    # The sha256 its output must have: a pick of film.lock, or a take the user added.  The
    # engine takes it from the store and never makes anything else in its place.
    pin: str | None = None
    waits: str | None = None  # why it waits (for a pick) instead of running
    # The backend that makes it if its own refuses the content (never in its key: the
    # step is the same piece of work, and its output is kept under the same key).
    fallback: str | None = None
    # Inputs it uses when the store holds them and never makes (an export names the takes
    # a pick passed over): their keys are in its key, whether they are held is checked
    # when the build reaches it (engine/executor.py).
    held: tuple[InputRef, ...] = ()
    # Its output names files by absolute path (an export's media): the engine tells it
    # where build/<film>/ is (`folder`), records that with its output, and a moved project
    # makes it again.
    located: bool = False
    # The canonical text of parts of its key material and record, made before
    # (compiler/keys.py `canonical`): what writing its record needs not encode again.
    spliced: Spliced | None = attrs.field(default=None, repr=False)

    @property
    def prompt(self) -> str:
        return self.fields.prompt


class GraphError(Exception):
    pass


_NO_FIELDS = Fields()
# Steps made from the film's context alone, whoever asks first (a character's sheet, a
# location's plate): a shot's remembered steps name them, and are replayed by asking again.
_CONTEXT_KINDS = frozenset({"sheet", "plate"})


@attrs.define(eq=False)
class GraphMemo:
    """What a process that compiles the same film again and again (`filmc build --watch`,
    the language server, the review page) keeps of its last graph, so that a shot whose
    inputs did not change is not keyed again: its steps are put back as they were.

    Each of a shot's calls (its keyframes; then its last frame, clips and the shot) is
    remembered under a fingerprint of everything it reads: the shot's IR and its entry in
    film.lock, pickled (so 1 and 1.0, or a changed tag, never compare equal), the ids and
    keys of the steps it is made from (the shot before, the next shot's keyframe) and its
    flags.  What every shot reads (the film's size and style, the characters and
    locations, the backends and what `choose` names, the templates it loaded) is the
    context: when it changes, nothing is reused.  A compile keeps only the calls it made,
    so the memo holds one film's worth."""

    context: bytes | None = None
    templates: dict[str, str | None] = attrs.field(factory=dict)  # name → digest, or None
    calls: dict[tuple, tuple[list[tuple], Any]] = attrs.field(factory=dict)
    # (scene, shot) → (the shot's IR object, its lock entry, their fingerprint)
    prints: dict[tuple[str, str], tuple[ir.Shot, Any, bytes]] = attrs.field(factory=dict)
    # what the exports say of a shot (compiler/exports.py), by its calls' fingerprints
    facts: dict[tuple, Any] = attrs.field(factory=dict)
    # each shot's entry in a timeline export, and its canonical text (exports.py `part`)
    parts: dict[tuple, tuple] = attrs.field(factory=dict)
    # (scene, shot) → (the lowered shot, its lines' speech keys); → (the lowered shot, the
    # lengths said, the shot timed by them): `_Builder.retime`
    spoken: dict[tuple[str, str], tuple[ir.Shot, list[str]]] = attrs.field(factory=dict)
    timed: dict[tuple[str, str], tuple[ir.Shot, tuple, ir.Shot]] = attrs.field(factory=dict)
    # id(step) → (the step, what its backend cannot honour): compiler/warnings.py
    problems: dict[int, tuple[Any, list[tuple[str, str]]]] = attrs.field(factory=dict)
    reused: int = 0  # calls the last compile put back
    made: int = 0  # calls it made again

    def loaded(self) -> None:
        """What is kept by object identity keyed again by the new objects' ids, once
        unpickled (filmc/memocache.py): the steps' problems, each shot's timeline
        entries (by its facts) and dialogue (by its shot)."""
        self.problems = {id(v[0]): v for v in self.problems.values()}
        self.parts = {(k[0], id(v[0]), *k[2:]) if k[0] == "lines" else (id(v[0]), *k[1:]): v
                      for k, v in self.parts.items()}




class _Builder:
    def __init__(self, film: ir.Film, templates: Templates, choose: Callable[[str], str],
                 infos: Mapping[str, BackendInfo], lock: Lock) -> None:
        self.film = film
        self.lock = lock
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
        self._keyed_fields: dict[tuple[str, str], tuple[str, ...]] = {}
        self.burn_subtitles = False
        self.loudness = DEFAULT_LOUDNESS  # [sound] loudness: the film's mix target, LUFS
        self.exports: ExportSetup | None = None  # None: a graph without the exports
        # speech step keys → the lines' real lengths, where the store knows them (None: the
        # estimates alone); how many lines were timed by them
        self.said: Callable[[list[str]], Mapping[str, Fraction]] | None = None
        self.retimed = 0
        self.memo: GraphMemo | None = None
        self._calls: dict[tuple, tuple[list[tuple], Any]] = {}  # what this compile made
        self._recording: list[tuple] | None = None
        self._replay_asked: set[tuple] = set()  # the sheets and plates replays asked for
        self._holding: list[str] = []  # the steps with `held` inputs (the exports)
        self._files: set[str] = set()  # the files the steps read, relative to the project
        self._unordered = False  # a step added before what it is made from (`_insert`)
        self._fingerprints: dict[tuple[str, str], bytes] = {}
        self._prints: dict[tuple[str, str], tuple[ir.Shot, Any, bytes]] = {}
        self._by_shot: dict[bytes, list[tuple]] = {}  # a shot's fingerprint → its calls'
        self.facts: dict[tuple, Any] = {}  # what this compile's exports said of each shot
        self.parts: dict[tuple, tuple] = {}  # and their entries in the timelines
        self._spoken: dict[tuple[str, str], tuple[ir.Shot, list[str]]] = {}
        self._timed: dict[tuple[str, str], tuple[ir.Shot, tuple, ir.Shot]] = {}
        # (scene, shot, kind) → (the shot's backend, its fallback), for the shots that have one
        self._fallbacks: dict[tuple[str | None, str | None, str], tuple[str, str]] = {
            (scene.id, shot.id, kind): (shot.backend(kind), fb)
            for scene in film.scenes for shot in scene.shots for kind, fb in shot.fallbacks}

    def fallback(self, sid: StepId, backend: str) -> str | None:
        """The backend that makes `sid` if `backend` refuses it: the shot's (its `fallback`
        line, or filmc.toml's for the shot's backend), else filmc.toml's for `backend` (a
        candidate on another backend, a sheet, a plate)."""
        shot = self._fallbacks.get((sid.scene, sid.shot, sid.kind))
        if shot is not None and shot[0] == backend:
            return shot[1]
        info = self.infos.get(backend)
        name = info.config.fallback_for(sid.kind) if info is not None else None
        other = self.infos.get(name) if name and name != backend else None
        return name if other is not None and other.capabilities(sid.kind) is not None else None

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

    def keyed_fields(self, name: str, kind: str) -> tuple[str, ...]:
        """The request fields that key a `kind` step on backend `name`, in field order."""
        k = (name, kind)
        found = self._keyed_fields.get(k)
        if found is None:
            keyed = self.infos[name].fields(kind)
            found = self._keyed_fields[k] = tuple(n for n in S.FIELD_NAMES if n in keyed)
        return found

    def add(self, sid: StepId, backend: str | None, *, characters: frozenset[str] = frozenset(),
            template: tuple[str, dict] | None = None, into: str = "prompt",
            fields: Fields = _NO_FIELDS, params: dict[str, Any] | None = None,
            inputs: tuple[InputRef, ...] = (), files: tuple[ir.RefFile, ...] = (),
            pin: str | None = None, waits: str | None = None,
            held: tuple[InputRef, ...] = (), located: bool = False,
            keyed_params: dict[str, Any] | None = None,
            spliced: Spliced | None = None) -> str:
        """Add a step; `template` (name, context) renders the field named `into`;
        `keyed_params`: its params as its key holds them, when not as they are (an
        export holds each shot's entry by its digest); `spliced`: the canonical text of
        parts of its key material, made before (compiler/keys.py `canonical`)."""
        id = str(sid)
        if id in self.keys:
            return id
        tmpl_path, tmpl_digest = None, None
        if template is not None:
            t = self.templates.get(template[0], backend)
            fields = _with(fields, into, self.render(t, template[1]))
            tmpl_path, tmpl_digest = t.path, t.digest
        params = params or {}
        input_keys = [self.keys[i.step] for i in inputs]
        material: dict[str, Any] = {"kind": sid.kind}
        if backend is not None:
            info = self.infos[backend]
            keyed = info.fields(sid.kind)
            material["adapter"] = self.backend_key(backend, sid.kind)
            for name in self.keyed_fields(backend, sid.kind):
                material[name] = getattr(fields, name)
            if into in keyed and tmpl_digest is not None:
                material["template"] = tmpl_digest
            if "params" in keyed:
                material["params"] = params if keyed_params is None else keyed_params
            per_request = info.adapter.key_request(sid.kind, info.settings, fields)
            if per_request:
                material["request"] = dict(per_request)
        # Each input by its key, and the part it plays and what it shows: an adapter may
        # tell the service ("Image 1 shows CHEN (winter outfit)").
        if spliced is not None and ("inputs",) in spliced:
            material["inputs"] = None  # their text is spliced; the record names each below
        else:
            material["inputs"] = [[k, i.role, _shown(i.tags)] for i, k in zip(inputs, input_keys)]
        material["files"] = [f.digest for f in files]
        if held:
            material["held"] = [[self.keys[i.step], i.role, _shown(i.tags)] for i in held]
        if backend is None and pin is not None:
            material["digest"] = pin  # a take the user added: it is its bytes
        key = step_key(material, spliced)
        record = {**material, "backend": backend,
                  "inputs": {i.step: k for i, k in zip(inputs, input_keys)},
                  "files": {f.path: f.digest for f in files}}
        if spliced is not None and ("inputs",) in spliced:  # the record names them by id
            spliced = {p: t for p, t in spliced.items() if p != ("inputs",)} or None
        step = Step(sid, backend, characters, tmpl_path, fields, params, inputs, files, key, record,
                    pin, waits, None if backend is None else self.fallback(sid, backend), held,
                    located, spliced)
        self.keys[id] = key
        if not _insert(self.g, id, {"kind": sid.kind, "scene": sid.scene, "shot": sid.shot,
                                    "characters": characters, "step": step},
                       [i.step for i in inputs]):
            self._unordered = True
        if held:
            self._holding.append(id)
        if files:
            self._files.update(f.path for f in files)
        if self._recording is not None and sid.kind not in _CONTEXT_KINDS:
            self._recording.append(("node", id))
        return id

    def entry_text(self, ref: InputRef) -> str:
        """An input's entry in the key material of the step it goes into, as canonical
        text (what `add` writes for it): for a step that splices its inputs' entries."""
        return canonical([self.keys[ref.step], ref.role, _shown(ref.tags)])

    # -- remembering a shot's steps between compiles (GraphMemo) -------------------------------

    def remembered(self, fingerprint: tuple, make: Callable[[], T]) -> T:
        """`make()`, or what it made last time the memo saw the same fingerprint: its steps
        put back in the order it added them, the sheets and plates it asked for asked again."""
        memo = self.memo
        if memo is None:
            return make()
        self._by_shot.setdefault(fingerprint[1], []).append(fingerprint)
        found = memo.calls.get(fingerprint)
        if found is not None:
            self._replay(found[0])
            memo.reused += 1
            self._calls[fingerprint] = found
            return found[1]
        assert self._recording is None, "a remembered call inside another"
        self._recording = []
        try:
            result = make()
            made = [(e[0], e[1], dict(self.g._node[e[1]])) if e[0] == "node" else e
                    for e in self._recording]
        finally:
            self._recording = None
        memo.made += 1
        self._calls[fingerprint] = (made, result)
        return result

    def _replay(self, made: list[tuple]) -> None:
        """Put back what a call made: its steps, and the sheets and plates it asked for,
        each of these asked once a compile (a film's 3,000 shots ask for a few dozen)."""
        g, keys, asked = self.g, self.keys, self._replay_asked
        for entry in made:
            what = entry[0]
            if what == "node":
                _, id, data = entry
                step = data["step"]
                keys[id] = step.key
                if not _insert(g, id, data, [i.step for i in step.inputs]):
                    self._unordered = True
                if step.held:
                    self._holding.append(id)
                if step.files:
                    self._files.update(f.path for f in step.files)
                continue
            if entry in asked:
                continue
            asked.add(entry)
            if what == "face":
                self.face_sheet(self._chars[entry[1]])
            elif what == "outfit":
                c = self._chars[entry[1]]
                outfit = c.outfit(entry[2])
                assert outfit is not None
                self.outfit_sheet(c, outfit)
            else:
                self.plate(entry[1], entry[2])

    def calls_of(self, shot: ir.Shot) -> tuple | None:
        """The fingerprints of the shot's calls in this compile, which fix every step of
        its own (None: no memo)."""
        if self.memo is None:
            return None
        return tuple(self._by_shot.get(self.fingerprint(shot), ()))

    def _asked(self, *entry: Any) -> None:
        if self._recording is not None:
            self._recording.append(entry)

    def fingerprint(self, shot: ir.Shot) -> bytes:
        """The shot's IR and its entry in film.lock, pickled: equal bytes, equal values of
        equal types (a memo keyed by `==` would take 1 for 1.0, whose keys differ).  Not
        its number in the film, which no step of its own reads: a shot added near the
        start renumbers every shot after it, and re-keys none of them.  Without a memo (a
        command's one compile) nothing reads it: empty, not pickled."""
        if self.memo is None:
            return b""
        at = (shot.scene, shot.id)
        found = self._fingerprints.get(at)
        if found is None:
            entry = self.lock.shot(shot.id)
            # The same shot object as the last compile's (the lowering kept it: its scene
            # did not change) with an equal lock entry (strings): the same bytes.
            last = self.memo.prints.get(at) if self.memo is not None else None
            if last is not None and last[0] is shot and last[1] == entry:
                found = last[2]
            else:
                found = pickled((attrs.evolve(shot, number=0), entry))
            self._fingerprints[at] = found
            if self.memo is not None:
                self._prints[at] = (shot, entry, found)
        return found

    def context(self) -> bytes | None:
        """Everything but the shots that a shot's steps read; None where it cannot be told
        (then nothing is remembered).  With each backend's part of the keys of every kind
        it makes, which holds the facts of this machine it says matter (the animatic's
        panel font, its ffmpeg): a memo kept between processes (filmc/memocache.py)
        may meet another `FILMC_PANEL_FONT`."""
        film = self.film
        try:
            return pickled((
                film.width, film.height, film.fps, film.language, film.style, film.characters,
                film.locations,
                [(name, info.type, info.adapter.__module__, info.adapter.__qualname__,
                  info.adapter.version, dict(info.settings), dict(info.key_settings),
                  info.config, str(info.root),
                  [self.backend_key(name, kind) for kind in sorted(info.adapter.kinds)])
                 for name, info in sorted(self.infos.items())],
                [self.choose(kind) for kind in sorted(S.KINDS)]))
        except Exception:  # an object that does not pickle: compile without the memo
            return None

    def start_memo(self) -> None:
        """Keep the memo's calls only if the context is the one they were made in, and the
        templates they loaded load the same."""
        memo = self.memo
        if memo is None:
            return
        memo.reused = memo.made = 0
        context = self.context()
        if context is None:
            self.memo = None
            return
        same = context == memo.context
        if same:
            try:
                same = all(_digest(self.templates.load(name)) == digest
                           for name, digest in memo.templates.items())
            except TemplateError:
                same = False
        if not same:
            memo.calls, memo.templates, memo.prints, memo.facts = {}, {}, {}, {}
            memo.parts, memo.spoken, memo.timed = {}, {}, {}
        memo.context = context

    def end_memo(self) -> None:
        memo = self.memo
        if memo is not None:
            memo.calls, memo.prints, memo.facts = self._calls, self._prints, self.facts
            memo.parts, memo.spoken, memo.timed = self.parts, self._spoken, self._timed
            memo.templates = {**memo.templates, **self.templates.loaded()}

    # -- references: sheets and plates -------------------------------------------------------

    def sheets(self, member: ir.CastMember, framing: str) -> tuple[InputRef, ...]:
        """The references of one cast member, as `framing` shows them: the character's own
        sheet and, in an outfit, the outfit's sheet; a shot of hands or a back gets the
        outfit's alone (the face must not steer it); a silhouette or a voice, none."""
        if framing in ("silhouette", "voice"):
            return ()
        c = self._chars[member.character]
        outfit = c.outfit(member.outfit)
        face = InputRef(self.face_sheet(c), S.CHARACTER, Tags(c.id))
        if outfit is None:
            return (face,)
        worn = InputRef(self.outfit_sheet(c, outfit), S.CHARACTER, Tags(c.id, outfit.name))
        return (worn,) if framing in ("hands", "back") else (face, worn)

    def face_sheet(self, c: ir.Character) -> str:
        """`sheet.CHEN`: the character's own images, or generated from their look."""
        self._asked("face", c.id)
        sid = StepId.sheet(c.id, None)
        if str(sid) in self.keys:
            return str(sid)
        chars = frozenset({c.id})
        if c.refs:
            return self.add(sid, None, characters=chars, files=c.refs)
        ctx = {"character": {"look": c.look}, "outfit": "", "style": list(self.film.style.words)}
        return self.add(sid, self.choose("sheet"), characters=chars, template=("sheet", ctx),
                        fields=Fields(width=self.film.width, height=self.film.height),
                        params={"panel": {"character": c.id, "outfit": None, **_kind(c)}})

    def outfit_sheet(self, c: ir.Character, outfit: ir.Outfit) -> str:
        """`sheet.CHEN.winter`: the outfit's own images, or generated from the character's
        sheet and the outfit's words."""
        self._asked("outfit", c.id, outfit.name)
        sid = StepId.sheet(c.id, outfit.name)
        if str(sid) in self.keys:
            return str(sid)
        chars = frozenset({c.id})
        if outfit.refs:
            return self.add(sid, None, characters=chars, files=outfit.refs)
        ctx = {"character": {"look": c.look}, "outfit": outfit.look,
               "style": list(self.film.style.words)}
        face = InputRef(self.face_sheet(c), S.CHARACTER, Tags(c.id))
        return self.add(sid, self.choose("sheet"), characters=chars, template=("sheet", ctx),
                        fields=Fields(width=self.film.width, height=self.film.height),
                        params={"panel": {"character": c.id, "outfit": outfit.name, **_kind(c)}},
                        inputs=(face,))

    def plate(self, loc_id: str, time: str | None) -> str:
        self._asked("plate", loc_id, time)
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

    # -- a shot's candidates, takes and picks ----------------------------------------------------

    def seed(self, shot: ir.Shot, backend: str, kind: str, n: int) -> int | None:
        """The seed of the nth candidate (or take) on `backend`: the shot's seed (1 when it
        sets none) plus n - 1, so that candidates differ and rebuild the same.  A backend
        that takes no seed gets none, unless the shot asked (then `check` warns)."""
        if shot.seed is None:
            caps = self.infos[backend].capabilities(kind)
            return None if caps is not None and not caps.seed else n
        return shot.seed + n - 1

    def user_takes(self, shot: ir.Shot, kind: str) -> dict[str, str]:
        """The user's own takes of `kind` in the lock, as steps: name → node id."""
        out = {}
        for t in self.lock.shot(shot.id).takes_of(kind):
            sid = StepId(kind, shot.scene, shot.id, candidate=t.name)
            out[t.name] = self.add(sid, None, characters=self._cast_ids(shot), pin=t.digest,
                                   params={"take": {"digest": t.digest, "file": t.file,
                                                    "origin": t.origin, "ext": t.ext}})
        return out

    def _cast_ids(self, shot: ir.Shot) -> frozenset[str]:
        return frozenset(m.character for m in shot.cast)

    def choose_from(self, shot: ir.Shot, kind: str, made: dict[str, str],
                    user: dict[str, str], paid: bool) -> Choice:
        """Resolve the lock's pick of `kind` among `made` and `user` (name → node id); pin
        the picked step to the lock's digest and make the others optional."""
        nodes = {**made, **user}
        pick = self.lock.shot(shot.id).pick(kind)
        choice = resolve(kind, {n: self.keys[i] for n, i in nodes.items()}, user, pick, paid)
        if choice.pinned:
            assert pick is not None
            for name, node in nodes.items():
                data = self.g._node[node]
                if name == choice.used:
                    data["step"] = attrs.evolve(data["step"], pin=pick.digest)
                elif name in made:
                    data["optional"] = True  # not needed by the film: built only when selected
        return choice

    def keyframes(self, shot: ir.Shot, paid: bool) -> Choice:
        """Every keyframe candidate of a shot, on each backend its `candidates` lines name,
        and the user's own; which one its clips are made from."""
        film = self.film
        chars = self._cast_ids(shot)
        refs: tuple[InputRef, ...] = ()
        cast_ctx = []
        insets: dict[str, str | None] = {}  # the animatic shows the user's own images
        for m in shot.cast:
            framing = shot.framed(m.character)
            refs += self.sheets(m, framing)
            if framing == "voice":
                continue  # heard, not seen
            c = self._chars[m.character]
            o = c.outfit(m.outfit)
            for r in self.sheets(m, framing):  # the outfit's images before the character's own
                shown = c.outfit(r.tags.outfit) if r.tags.outfit else c
                if shown is not None and shown.refs:
                    insets[c.id] = r.tags.outfit
            face = framing in ("face", "figure")
            cast_ctx.append({"id": c.id, "framing": framing, "look": c.look if face else "",
                             "outfit": o.look if o else ""})
        loc = self._locs.get(shot.location) if shot.location else None
        if loc is not None:
            refs += (InputRef(self.plate(loc.id, shot.time), S.LOCATION,
                              Tags(location=loc.id, time=shot.time)),)
        negative = ", ".join(w for w in (shot.negative, *shot.camera.look.negative,
                                         *shot.light.negative, *shot.style.negative) if w)
        kf_ctx = {"shot": {"action": shot.action}, "cast": cast_ctx,
                  "location": self._location_ctx(loc, shot.time) if loc else None,
                  "camera": list(shot.camera.look.words), "light": list(shot.light.words),
                  "style": list(shot.style.words)}
        # What only the animatic draws (the prompts say it in words): animals and creatures,
        # the user's images of the cast, and the location's, as the panel's background.
        panel: dict[str, Any] = {"scene": shot.scene, "shot": shot.id, "location": shot.location,
                                 "time": shot.time, "action": shot.action}
        if loc is not None and (loc.refs or any(t.refs for t in loc.times if t.time == shot.time)):
            panel["backdrop"] = True
        base: dict[str, Any] = {
            "camera": dict(shot.camera.look.params), "light": dict(shot.light.params),
            "style": dict(shot.style.params), "cast": [c["id"] for c in cast_ctx],
            "framing": {c["id"]: c["framing"] for c in cast_ctx if c["framing"] != "figure"},
            "panel": panel}
        kinds = {c["id"]: self._chars[c["id"]].kind for c in cast_ctx}
        if any(k != "person" for k in kinds.values()):
            base["kind"] = {cid: k for cid, k in kinds.items() if k != "person"}
        if insets:
            base["insets"] = insets
        made: dict[str, str] = {}
        for backend, count in shot.candidates:
            assert backend is not None
            for n in range(1, count + 1):
                name = f"{backend}-{n}"
                made[name] = self.add(
                    StepId.keyframe(shot.scene, shot.id, name), backend,
                    template=("keyframe", kf_ctx),
                    fields=Fields(negative=negative, seed=self.seed(shot, backend, "keyframe", n),
                                  width=film.width, height=film.height, take=n),
                    params={**base, "candidate": name}, inputs=refs, characters=chars)
        return self.choose_from(shot, "keyframe", made,
                                self.user_takes(shot, "keyframe"), paid)

    def clips(self, shot: ir.Shot, first: InputRef, last: InputRef | None,
              waits: str | None, paid: bool) -> Choice:
        """A shot's clip takes, each from `first` (the picked keyframe, or the last frame
        of the shot before) and ending on `last`; which one the shot uses.  `paid`: whether
        what is made from the chosen take costs money (then an unpicked take waits)."""
        film = self.film
        backend = shot.backend("clip")
        ctx = {"shot": {"action": shot.action}, "movement": shot.camera.movement_words,
               "style": list(shot.style.words)}
        inputs = (first,) if last is None else (first, last)
        made: dict[str, str] = {}
        for n in range(1, shot.takes + 1):
            made[f"take{n}"] = self.add(
                StepId.clip(shot.scene, shot.id, f"take{n}"), backend, template=("clip", ctx),
                fields=Fields(seed=self.seed(shot, backend, "clip", n), width=film.width,
                              height=film.height, fps=film.fps, duration=shot.duration, take=n),
                params={"camera": dict(shot.camera.look.params)}, inputs=inputs,
                characters=self._cast_ids(shot), waits=waits)
        return self.choose_from(shot, "clip", made, self.user_takes(shot, "clip"), paid)

    def speech(self, shot: ir.Shot, line: ir.Line) -> str:
        """One line said: the speech template renders the voice and the line's direction."""
        who = self._chars[line.speaker]
        ctx = self._speech.setdefault((who.voice, line.paren), {"voice": who.voice,
                                                                 "paren": line.paren or ""})
        return self.add(StepId.speech(shot.scene, shot.id, line.index), shot.backend("speech"),
                        template=("speech", ctx), into="voice",
                        fields=Fields(text=line.text, speaker=line.speaker,
                                      language=line.language), characters=self._cast_ids(shot))

    def retime(self, said: Callable[[list[str]], Mapping[str, Fraction]]) -> None:
        """Time the dialogue by the real length of the lines already said (`said`: speech
        step key → seconds, from the store: engine/lengths.py); the others keep their
        estimate.  A line's speech does not depend on its timing, so its key is known
        before the shot's: the steps are keyed here, then taken out again, to be added in
        film order with the rest."""
        spoken = [(shot, line) for shot in self.film.shots for line in shot.lines]
        if not spoken:
            return
        # In a process that compiles again, a shot the lowering put back (the same object)
        # in the same context has the same lines' keys, and timed by the same lengths, the
        # same timed shot (whose fingerprint is then not pickled again).
        memo = self.memo
        keys: list[str] = []
        for shot in self.film.shots:
            if not shot.lines:
                continue
            at = (shot.scene, shot.id)
            found = memo.spoken.get(at) if memo is not None else None
            if found is None or found[0] is not shot:
                ids = [self.speech(shot, line) for line in shot.lines]
                found = (shot, [self.keys[i] for i in ids])
                for i in ids:
                    self.g.remove_node(i)
                    del self.keys[i]
            self._spoken[at] = found
            keys += found[1]
        known = said(keys)
        lengths: dict[tuple[str, str], dict[int, Fraction]] = {}
        for (shot, line), key in zip(spoken, keys):
            if key in known:
                lengths.setdefault((shot.scene, shot.id), {})[line.index] = known[key]
        if not lengths:
            return
        self.film = attrs.evolve(self.film, scenes=tuple(
            attrs.evolve(scene, shots=tuple(
                self._timed_shot(shot, lengths[(shot.scene, shot.id)])
                if (shot.scene, shot.id) in lengths else shot for shot in scene.shots))
            for scene in self.film.scenes))
        self.retimed = len(known)

    def _timed_shot(self, shot: ir.Shot, lengths: dict[int, Fraction]) -> ir.Shot:
        """`time_lines`, or what it gave the last compile for the same shot and lengths."""
        at = (shot.scene, shot.id)
        said = tuple(sorted(lengths.items()))
        found = self.memo.timed.get(at) if self.memo is not None else None
        if found is None or found[0] is not shot or found[1] != said:
            found = (shot, said, time_lines(shot, lengths))
        self._timed[at] = found
        return found[2]

    def finish(self, shot: ir.Shot, clip: str, waits: str | None) -> str:
        """The shot: its picked clip conformed, with its dialogue."""
        film = self.film
        chars = self._cast_ids(shot)
        speech = [InputRef(self.speech(shot, line), S.SPEECH, Tags(start=line.start, end=line.end))
                  for line in shot.lines]
        return self.add(StepId.of_shot(shot.scene, shot.id), shot.backend("shot"),
                        fields=Fields(width=film.width, height=film.height, fps=film.fps,
                                      duration=shot.duration),
                        params={"lines": [[line.start, line.end] for line in shot.lines]},
                        inputs=(InputRef(clip, S.CLIP), *speech), characters=chars, waits=waits)

    # -- the film and the side outputs -------------------------------------------------------------

    def build(self) -> nx.DiGraph:
        self.start_memo()  # (before the dialogue is timed: what it keeps needs the context)
        if self.said is not None:
            self.retime(self.said)
        film = self.film
        shots = film.shots
        picks: dict[tuple[str, str], ShotPicks] = {}
        # Keyframes first, all of them: a clip may end on the next shot's picked keyframe.
        kf: dict[tuple[str, str], Choice] = {}
        kf_node: dict[tuple[str, str], str] = {}
        panels: dict[str, list[InputRef]] = {}  # scene → its shots' panels, in film order
        for shot in shots:
            at = (shot.scene, shot.id)
            paid = not self.infos[shot.backend("clip")].runs_here
            if shot.continues:
                kf[at] = Choice("keyframe", CONTINUES, None, ())
                continue
            kf[at] = choice = self.remembered(
                ("keyframes", self.fingerprint(shot), paid),
                partial(self.keyframes, shot, paid))
            assert choice.used is not None
            kf_node[at] = str(StepId.keyframe(shot.scene, shot.id, choice.used))
        shot_refs: list[InputRef] = []
        chapters: list[list] = []
        clock = ir.Clock()  # the time from the film's start, exactly
        for scene in film.scenes:
            chapters.append([scene.title, clock.value])
            for s in scene.shots:
                clock.add(s.duration)
        lines: list[list] = []
        rows: list[list] = []
        clock = ir.Clock()
        prev_clip: str | None = None
        prev_panel: str | None = None
        prev_waits: str | None = None
        for i, shot in enumerate(shots):
            at = (shot.scene, shot.id)
            address = shot.id
            kchoice = kf[at]
            if shot.continues:
                assert prev_clip is not None  # `check` refuses it in the first shot
                waits = prev_waits
                first = InputRef(self.remembered(
                    ("lastframe", self.fingerprint(shot), prev_clip, self.keys[prev_clip], waits),
                    partial(self.add, StepId.lastframe(shot.scene, shot.id),
                            self.choose("lastframe"), inputs=(InputRef(prev_clip, S.CLIP),),
                            characters=self._cast_ids(shot), waits=waits)), S.FIRST_FRAME)
                panel = prev_panel
            else:
                first = InputRef(kf_node[at], S.FIRST_FRAME)
                waits = _waiting(kchoice, address)
                panel = kf_node[at]
            last = None
            if shot.ends_on_next:
                after = shots[i + 1]
                last = InputRef(kf_node[(after.scene, after.id)], S.LAST_FRAME)
                # Its keyframe was resolved for its own clips: these may be paid when its are not.
                clip_paid = not self.infos[shot.backend("clip")].runs_here
                waits = waits or _waiting(kf[(after.scene, after.id)], after.id, clip_paid)
            # The picked take is used by the shot (conformed here) and, with `first_frame
            # previous`, by the next shot's clips.  The takes are made either way, so an
            # unpicked take makes wait only what would be paid for from it: the rest uses
            # the first take until a pick, and the film has a cut.
            shot_paid = not self.infos[shot.backend("shot")].runs_here
            nxt = shots[i + 1] if i + 1 < len(shots) else None
            next_paid = (nxt is not None and nxt.continues
                         and not self.infos[nxt.backend("clip")].runs_here)
            clips_paid = shot_paid or next_paid
            cchoice = self.remembered(
                ("clips", self.fingerprint(shot), first.step, self.keys[first.step],
                 last and last.step, last and self.keys[last.step], waits, clips_paid),
                partial(self.clips, shot, first, last, waits, clips_paid))
            assert cchoice.used is not None
            clip = str(StepId.clip(shot.scene, shot.id, cchoice.used))
            clip_waits = waits or _waiting(cchoice, address)
            shot_waits = clip_waits if shot_paid else waits
            finished = self.remembered(
                ("finish", self.fingerprint(shot), clip, self.keys[clip], shot_waits),
                partial(self.finish, shot, clip, shot_waits))
            shot_refs.append(InputRef(finished, S.SHOT))
            picks[at] = ShotPicks(shot.scene, shot.id, kchoice, cchoice)
            assert panel is not None
            panels.setdefault(shot.scene, []).append(InputRef(panel, S.PANEL, Tags(label=shot.id)))
            prev_clip, prev_panel, prev_waits = clip, panel, clip_waits
            if shot.lines:
                t = clock.value
                for line in shot.lines:
                    lines.append([t + line.start, t + line.end, line.text, line.speaker])
            rows.append([shot.scene, shot.id, shot.duration])
            clock.add(shot.duration)
        size = Fields(width=film.width, height=film.height, fps=film.fps)
        subs = self.add(StepId("subtitles"), self.choose("subtitles"),
                        params={"lines": lines, "end": clock.value})
        # The film's sound is the mix of its lines, music, ambience and effects to the
        # loudness filmc.toml sets (compiler/sound.py): a step that hears no picture, so a
        # camera edit re-joins the film and never re-mixes it.  The film carries the mix,
        # and the subtitles as a track tagged with the film's language (or burnt into the
        # picture).
        mix = add_mix(self, film, self.loudness)
        self.add(StepId("film"), self.choose("film"), fields=size,
                 params={"chapters": chapters, "burn_subtitles": self.burn_subtitles,
                         **({"language": film.language} if film.language else {})},
                 inputs=(*shot_refs, InputRef(subs, S.SUBTITLES), InputRef(mix, S.MIX)))
        self.add(StepId("timeline"), self.choose("timeline"), fields=size,
                 params={"shots": rows})
        self.storyboard(panels)
        if self.exports is not None:
            add_exports(self, picks, self.exports)
        # Each step was added after what it is made from, so the graph has no cycle; were
        # one ever added otherwise, it is looked for.
        if self._unordered and not nx.is_directed_acyclic_graph(self.g):
            cycle = [u for u, _ in nx.find_cycle(self.g)]
            raise GraphError("the step graph has a cycle: " + " --> ".join(cycle + cycle[:1]))
        self.g.graph["picks"] = picks
        self.g.graph["holding"] = tuple(self._holding)  # the steps that hold others
        self.g.graph["files"] = frozenset(self._files)  # the files they read (a project's)
        # each step added after what it is made from (compiler/plan.py `needed` relies on it)
        self.g.graph["ordered"] = not self._unordered
        self.g.graph["film"] = self.film  # its dialogue timed by the lines said, where known
        self.g.graph["retimed"] = self.retimed
        self.g.graph["lock"] = self.lock.path.name if self.lock.path is not None else LOCK_NAME
        self.end_memo()
        clear = getattr(nx, "_clear_cache", None)  # what networkx's own calls each do
        if clear is not None:
            clear(self.g)
        return self.g

    def storyboard(self, panels: Mapping[str, list[InputRef]]) -> None:
        """One storyboard step a scene, over its own shots' panels, so that an edit redraws
        one scene's pages; then the index of every scene, which names their pages (their
        inputs' outputs, counted) and never reads them, so re-making it costs nothing.
        A scene's number and title are drawn on its pages, so they are in its key."""
        backend = self.choose("storyboard")
        pages: list[InputRef] = []
        scenes: list[list] = []
        for number, scene in enumerate(self.film.scenes, 1):
            sid = None
            if panels.get(scene.id):  # a scene with no shots has no pages
                sid = self.add(StepId.storyboard(scene.id), backend,
                               params={"scene": {"id": scene.id, "number": number,
                                                 "title": scene.title}},
                               inputs=tuple(panels[scene.id]))
                pages.append(InputRef(sid, S.PAGES))
            scenes.append([sid, scene.id, number, scene.title, len(scene.shots)])
        self.add(StepId("storyboard_index"), self.choose("storyboard_index"),
                 params={"scenes": scenes}, inputs=tuple(pages))


def _waiting(choice: Choice, address: str, paid: bool | None = None) -> str | None:
    """Why the steps made from `choice` wait, or None when they do not; `paid`: whether
    what is made from it costs money, when it is not what `choice` was resolved for."""
    if not (choice.waits if paid is None else paid and choice.status in (UNPICKED, STALE)):
        return None
    if choice.status == STALE:
        return f"awaiting a new {choice.kind} pick for {address}: {choice.why}"
    return f"awaiting a {choice.kind} pick for {address}"




def _digest(template: Any) -> str | None:
    return None if template is None else template.digest


def _kind(c: ir.Character) -> dict[str, str]:
    """A sheet's panel parameter for an animal or a creature (none for a person)."""
    return {} if c.kind == "person" else {"kind": c.kind}


_TAG_NAMES = tuple(a.name for a in attrs.fields(Tags))
_SHOWN: dict[Tags, dict[str, Any]] = {}


def _shown(tags: Tags) -> dict[str, Any]:
    """What an input shows, as its key material says it (its tags that are set).  The same
    few tags recur thousands of times in a film (a character's sheet in every shot of
    theirs): each is worked out once, and a copy handed out.  Tags with times are not kept:
    equal numbers of two types (1/2 and 0.5) would share an entry and not a key."""
    if tags.start is not None or tags.end is not None:
        return {k: v for k in _TAG_NAMES if (v := getattr(tags, k)) is not None}
    found = _SHOWN.get(tags)
    if found is None:
        if len(_SHOWN) > 65536:
            _SHOWN.clear()
        found = _SHOWN[tags] = {k: v for k in _TAG_NAMES if (v := getattr(tags, k)) is not None}
    return dict(found)


_FIELD_INDEX = {name: i for i, name in enumerate(S.FIELD_NAMES)}


def pickled(value: Any) -> bytes:
    """`value` pickled without pickle's memo, so that the bytes say its values and types
    alone, not which of its parts happen to be one object: a memo kept between processes
    (filmc/memocache.py) compares fingerprints made from objects shared otherwise (a
    parse unpickled, a parse made).  (No value fingerprinted refers to itself.)  The
    compiler's classes by their fields, in every process alike (`fast_pickling`)."""
    fast_pickling()
    out = io.BytesIO()
    p = pickle.Pickler(out, 5)
    p.fast = True
    p.dump(value)
    return out.getvalue()


@functools.cache
def fast_pickling() -> None:
    """The AST's, the IR's and the graph's frozen attrs classes pickled as `cls(*fields)`
    (lang/parsecache.py `fast_pickling`): a feature's compile memo loads in 0.29 s, not
    0.46 (filmc/memocache.py)."""
    from ..lang import parsecache
    from . import exports, ir, lock

    parsecache.fast_pickling(ir, S, sys.modules[__name__], lock, exports, derived=(StepId,))


def _insert(g: nx.DiGraph, node: str, data: dict[str, Any], sources: list[str]) -> bool:
    """`g.add_node(node, **data)`, then `g.add_edge(source, node)` for each source, as
    networkx makes them (the same dicts, in the same order), without its bookkeeping at
    each call: a watch's compile puts back 14,000 nodes and 23,000 edges, and networkx's
    calls were a fifth of it.  (`build` clears networkx's cache once, at its end.)
    Whether the graph stays in order: a new node, made from nodes already there (so the
    graph can have no cycle)."""
    succ, pred, attrs_of = g._succ, g._pred, g._node
    ordered = node not in succ
    if ordered:
        succ[node], pred[node], attrs_of[node] = {}, {}, dict(data)
    else:
        attrs_of[node].update(data)
    into = pred[node]
    for source in sources:
        out = succ.get(source)
        if out is None:  # (never here: a step's inputs are added before it)
            ordered = False
            out = succ[source] = {}
            pred[source], attrs_of[source] = {}, {}
        edge = out.get(node)
        if edge is None:
            edge = {}
        out[node] = into[source] = edge
    return ordered


def _with(fields: Fields, name: str, value: Any) -> Fields:
    """`fields` with one field replaced: attrs.evolve, without its per-call introspection
    (every templated step of a film makes one)."""
    values = [getattr(fields, n) for n in S.FIELD_NAMES]
    values[_FIELD_INDEX[name]] = value
    return Fields(*values)


_TIME_WORDS = {"DAWN": "at dawn", "SUNRISE": "at sunrise", "MORNING": "in the morning",
               "DAY": "in daylight", "NOON": "at noon", "AFTERNOON": "in the afternoon",
               "GOLDEN_HOUR": "at golden hour", "SUNSET": "at sunset", "DUSK": "at dusk",
               "EVENING": "in the evening", "NIGHT": "at night", "MIDNIGHT": "at midnight"}


def build_graph(film: ir.Film, templates: Templates, choose: Callable[[str], str],
                infos: Mapping[str, BackendInfo], burn_subtitles: bool = False,
                lock: Lock | None = None, exports: ExportSetup | None = None,
                loudness: float | None = None,
                said: Callable[[list[str]], Mapping[str, Fraction]] | None = None,
                memo: GraphMemo | None = None) -> nx.DiGraph:
    """The step graph of a film, every node keyed.  `choose(kind)`: the backend of the
    film-wide steps of `kind` (a shot's own steps name theirs in the IR); `lock`: the
    film's picks (compiler/lock.py); `exports`: where the exports' media lie (None: no
    `export.*` steps); `said`: the real length of lines already said, by speech step key
    (engine/lengths.py), which times the dialogue in their place of the estimates; `memo`:
    what the last compile in this process made (GraphMemo), to put back the steps of the
    shots that did not change.  `graph.graph["picks"]` holds each shot's `ShotPicks`, `graph.graph["film"]` the film
    as the graph times it."""
    builder = _Builder(film, templates, choose, infos, lock or Lock(None))
    builder.burn_subtitles = burn_subtitles
    if loudness is not None:
        builder.loudness = loudness
    builder.exports = exports
    builder.said = said
    builder.memo = memo
    return builder.build()
