"""The exports as steps of the graph: the cut handed to an editor, a spreadsheet, a player.

    export.otio     OpenTimelineIO: every shot with every candidate and take as its
                    clip's media references, the pick active, a dialogue track,
                    scene markers, each clip's metadata
    export.edl      CMX 3600, the active take of each shot
    export.fcpxml   Final Cut Pro X XML, the active take of each shot and the dialogue
    export.srt      the film's subtitles (the `subtitles` step's file)
    export.csv      the shot list: one row a shot

Each is a `kind:export` step made by the built-in `local` backend
(backends/local/interchange.py writes the files) and laid out under
`build/<film>/export/` (lang/files.py).  Its parameters are the whole of what the
file says — film order, frame counts, names, prompts, step keys, estimated costs,
picks, where each file lies — so its key changes exactly when the file would,
and a build makes it again only then.  A timeline's key holds each shot's entry, and
each shot's lines, by the sha256 of its canonical text (`digest`): a one-shot edit
hashes that shot's entry again, not the whole cut, and the last build's record of
the export is its header and those digests, not a copy of the cut.

What an export names it is made from, as inputs, where a whole build makes it
anyway: the conformed shots, every candidate and take of a shot not yet picked,
the pick, the dialogue.  The candidates and takes a pick passed over (which a
build makes only when asked) are `held`: the export names each one the store
holds, and never makes one (engine/executor.py), so exporting never pays for a
passed-over take.

Media are named by absolute `file://` URL (an editor, Final Cut above all, needs
one).  Keys never hold an absolute path (a key is the same on every machine), so
the step's parameters name each file relative to `build/<film>/`, and the engine
tells the step where that folder is when it runs (`Step.located`): a fact it
records with the output and checks on reuse, like the held takes.  A moved project
makes its exports again, in milliseconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import attrs

from ..lang import files
from ..lang import steps as S
from ..lang.steps import FILM_STEMS, InputRef, StepId
from . import ir
from .keys import Spliced, canonical
from .lock import CONTINUES, PICKED, SINGLE, STALE, UNPICKED, ShotPicks
from .pipeline import shot_info

FORMATS = tuple(files.EXPORTS)  # otio edl fcpxml srt csv
# What each format holds of the media: every candidate, the active take, none.
_EVERY, _ACTIVE, _NONE = "every", "active", "none"
_HOLDS = {"otio": _EVERY, "edl": _ACTIVE, "fcpxml": _ACTIVE, "srt": _NONE, "csv": _NONE}
CSV_COLUMNS = ("number", "scene", "shot", "size", "angle", "lens", "movement", "light", "cast",
               "duration", "candidates", "pick", "takes", "take", "status", "cost", "action")
# A shot's status in the shot list: the most pressing of its two choices.
_STATUS_ORDER = (STALE, UNPICKED, PICKED, SINGLE, CONTINUES)


@attrs.frozen
class ExportSetup:
    """What an export needs beyond the film: the money unit of its costs; which formats a
    whole build writes (`[build] exports`; None: all of them)."""

    currency: str = "USD"
    formats: tuple[str, ...] | None = None


def add_exports(b: Any, picks: dict[tuple[str, str], ShotPicks], setup: ExportSetup) -> None:
    """Add `export.<format>` for every format to the graph builder `b`
    (compiler/graph.py's `_Builder`), after the film and its side outputs.  A format
    `[build] exports` leaves out is `optional`: made only when selected (`filmc export`)."""
    film: ir.Film = b.film
    cut = _Cut(b, picks, setup)
    for fmt in FORMATS:
        holds = _HOLDS[fmt]
        if fmt == "srt":
            b.add(StepId.export(fmt), b.choose("export"), params={"format": fmt},
                  inputs=(InputRef(str(StepId("subtitles")), S.SUBTITLES),))
            continue
        if fmt == "csv":
            rows, digests = cut.rows()
            head = {"format": fmt, "columns": list(CSV_COLUMNS), "currency": setup.currency}
            b.add(StepId.export(fmt), b.choose("export"), params={**head, "rows": rows},
                  keyed_params={**head, "rows": digests})
            continue
        doc, keyed, inputs, held, spliced = cut.document(fmt, holds)
        chars = frozenset(c.id for c in film.characters)
        b.add(StepId.export(fmt), b.choose("export"), characters=chars, params=doc,
              keyed_params=keyed, inputs=inputs, held=held, located=True,
              spliced=spliced)
    for fmt in FORMATS:
        if setup.formats is not None and fmt not in setup.formats:
            b.g.nodes[str(StepId.export(fmt))]["optional"] = True


@attrs.frozen
class _Facts:
    meta: dict[str, Any]  # what the OTIO clip's metadata says
    refs: list[dict[str, Any]]  # every take, candidate and the conformed shot
    active: dict[str, Any]  # the take the film uses
    cost: float | None


@attrs.define
class _Said:
    """A shot's lines as the timelines hold them, the speech they name, their digest, and
    (in a process that compiles again) the speech's entries in the key as text."""

    entries: list[dict[str, Any]]
    refs: tuple[InputRef, ...]
    digest: str
    inputs: str = ""


@attrs.frozen
class _Texts:
    """A shot's entry in a timeline by its digest, and (in a process that compiles again)
    its media's entries in the key's material as text (those a whole build makes, and the
    `held` ones): none or one each."""

    digest: str
    inputs: list[str]
    held: list[str]


def digest(text: str) -> str:
    """How an export's key holds a shot's entry (or its lines): the sha256 of its
    canonical text."""
    return hashlib.sha256(text.encode()).hexdigest()


class _Cut:
    """The film as the exports describe it."""

    def __init__(self, b: Any, picks: dict[tuple[str, str], ShotPicks],
                 setup: ExportSetup) -> None:
        self.b = b
        self.film: ir.Film = b.film
        self.picks = picks
        self.setup = setup
        self.fps = self.film.fps
        self._frames: dict[tuple[str, str], tuple[int, int]] = {}
        self._facts: dict[tuple[str, str], _Facts] = {}
        # Each shot's first frame and frames: round(t x fps) at its start and its end, t
        # the exact sum of the durations before it.
        clock, fps, start = ir.Clock(), Fraction(self.fps), 0
        for shot in self.film.shots:
            clock.add(shot.duration)
            end = clock.frames(fps)
            self._frames[(shot.scene, shot.id)] = (start, end - start)
            start = end

    def step(self, node: str) -> Any:
        return self.b.g._node[node]["step"]

    def needed(self, node: str) -> bool:
        """Whether a whole build makes `node` (an input of the export), or only names it
        when the store holds it (`held`: a candidate a pick passed over)."""
        return not self.b.g._node[node].get("optional")

    def cost(self, nodes: Iterable[str]) -> float | None:
        """The estimated cost of making these steps once (None: one has no price)."""
        from .plan import estimate

        total = 0.0
        for node in nodes:
            price = estimate(self.step(node), self.b.infos)
            if price is None:
                return None
            total += price
        return round(total, 6)

    def facts(self, scene: ir.Scene, shot: ir.Shot) -> _Facts:
        """What every export says of one shot, worked out once."""
        at = (shot.scene, shot.id)
        found = self._facts.get(at)
        if found is not None:
            return found
        # In a process that keeps its last graph (GraphMemo): the same calls made the
        # shot's steps, so what the exports said of it stands, if its number and its
        # scene's title are the same.
        calls = self.b.calls_of(shot)
        remembered = (calls, shot.number, scene.title, self.setup.currency) if calls else None
        if remembered is not None:
            found = self.b.memo.facts.get(remembered)
            if found is not None:
                self._facts[at] = self.b.facts[remembered] = found
                return found
        p = self.picks[at]
        take, kf = p.clip.used, p.keyframe.used
        assert take is not None
        shot_node = str(StepId.of_shot(shot.scene, shot.id))
        takes = [(n, str(StepId.clip(shot.scene, shot.id, n))) for n in p.clip.candidates]
        stills = [(n, str(StepId.keyframe(shot.scene, shot.id, n)))
                  for n in p.keyframe.candidates]
        speech = [str(StepId.speech(shot.scene, shot.id, line.index)) for line in shot.lines]
        last = str(StepId.lastframe(shot.scene, shot.id))
        made = [n for _c, n in stills + takes] + speech + \
            ([last] if last in self.b.keys else []) + [shot_node]
        # The takes first (what an editor swaps), then the keyframe candidates, then the
        # conformed shot; the take the film uses is the active one.
        refs = [self.ref(name, "clip", node, files.clip_file(shot.id, name))
                for name, node in takes]
        refs += [self.ref(f"keyframe:{name}", "keyframe", node,
                          files.keyframe_file(shot.id, name)) for name, node in stills]
        refs.append(self.ref("conformed", "shot", shot_node, files.shot_file(shot.id)))
        active = next(r for r in refs if r["name"] == take)
        kf_step = self.step(str(StepId.keyframe(shot.scene, shot.id, kf))) if kf else None
        clip_step = self.step(active["step"])
        cam = shot.camera
        cost = self.cost(made)
        meta = {
            "scene": shot.scene, "scene_title": scene.title, "shot": shot.id,
            "number": shot.number, "duration": _fraction(shot.duration),
            # The presets by name (their words are in the prompt).
            "camera": {"size": cam.size or "", "angle": cam.angle or "",
                       "lens_mm": _fraction(cam.lens_mm) if cam.lens_mm else "",
                       "movement": cam.movement or "", "presets": list(cam.look.presets)},
            "light": _light(shot.light),
            "cast": [{"character": m.character, "outfit": m.outfit or "",
                      "framing": shot.framed(m.character)} for m in shot.cast],
            "action": shot.action,
            "prompt": kf_step.prompt if kf_step is not None else clip_step.prompt,
            "backend": {"keyframe": (kf_step.backend or "") if kf_step is not None else "",
                        "clip": clip_step.backend or "", "shot": self.step(shot_node).backend},
            "key": self.b.keys[shot_node],
            "keys": {"keyframe": kf_step.key if kf_step is not None else "",
                     "clip": clip_step.key},
            "keyframe": {"used": kf or "", "status": p.keyframe.status},
            "take": {"used": take, "status": p.clip.status},
            "cost": cost, "currency": self.setup.currency,
        }
        found = self._facts[at] = _Facts(meta, refs, active, cost)
        if remembered is not None:
            self.b.facts[remembered] = found
        return found

    def ref(self, name: str, kind: str, node: str, file: str) -> dict:
        step = self.step(node)
        origin = step.backend if step.backend is not None else \
            step.params.get("take", {}).get("origin", "imported")
        return {"name": name, "kind": kind, "step": node, "file": files.stem(file),
                "key": step.key, "backend": origin, "seed": step.fields.seed}

    # -- the timeline formats --------------------------------------------------------------

    def document(self, fmt: str, holds: str) -> tuple[dict, dict, tuple[InputRef, ...],
                                                      tuple[InputRef, ...], Spliced | None]:
        """(params, keyed, inputs, held, spliced) of a timeline export: OTIO holds every
        take, every candidate and each shot's metadata; EDL and FCPXML the active take
        alone.  `keyed`: the params as the key holds them, each shot's entry and each
        shot's lines by its digest.  `spliced`: in a process that compiles again, the
        canonical text of the media's entries in the key, each shot's made once (`part`;
        compiler/keys.py `canonical`)."""
        film = self.film
        inputs: list[InputRef] = []
        held: list[InputRef] = []
        shots = []
        # The digests of the shots' entries and of their lines, and (in a process that
        # compiles again) each input's entry in the key's material as text, kept a shot.
        memo = self.b.memo is not None
        digests: list[str] = []
        line_digests: list[str] = []
        in_texts: list[str] = []
        held_texts: list[str] = []
        for scene in film.scenes:
            for shot in scene.shots:
                start, frames = self._frames[(shot.scene, shot.id)]
                doc, strong, passed, text = self.part(self.facts(scene, shot), shot.id, holds,
                                                      start, frames)
                inputs += strong
                held += passed
                shots.append(doc)
                digests.append(text.digest)
                in_texts += text.inputs
                held_texts += text.held
        lines: list[dict] = []
        if fmt != "edl":  # CMX 3600 holds the picture; the dialogue goes with FCPXML and OTIO
            for shot in film.shots:
                if shot.lines:
                    said = self.said(shot, self._frames[(shot.scene, shot.id)][0])
                    inputs += said.refs
                    lines += said.entries
                    line_digests.append(said.digest)
                    if memo:
                        in_texts.append(said.inputs)
        scenes = []
        for scene in film.scenes:
            if not scene.shots:
                continue
            first = self._frames[(scene.id, scene.shots[0].id)][0]
            last = self._frames[(scene.id, scene.shots[-1].id)]
            place = shot_info(scene, scene.shots[0]).place
            scenes.append({"id": scene.id, "title": scene.title, "place": place,
                           "start": first, "frames": last[0] + last[1] - first})
        stems: list[str] = []
        if holds == _EVERY and film.shots:  # OTIO: the mix's stems, as audio tracks
            mix = InputRef(str(StepId("mix")), S.MEDIA)
            inputs.append(mix)
            if memo:
                in_texts.append(self.b.entry_text(mix))
            stems = list(FILM_STEMS)
        last = self._frames[(film.shots[-1].scene, film.shots[-1].id)] if film.shots else (0, 0)
        doc = {"format": fmt, "title": film.title, "fps": _fraction(film.fps),
               "stems": stems, "frames": last[0] + last[1],
               "width": film.width, "height": film.height, "language": film.language or "",
               "currency": self.setup.currency,
               "scenes": scenes, "shots": shots, "lines": lines}
        # The key holds each shot's entry, and each shot's lines, by its digest.
        keyed = {**doc, "shots": digests, "lines": line_digests}
        spliced: dict[tuple[str, ...], str] | None = {} if memo else None
        # Each medium once (a step is named by one shot); were one named twice, the
        # first naming stands, and the inputs' entries are encoded whole.
        for refs, entries, path in ((inputs, in_texts, "inputs"), (held, held_texts, "held")):
            steps = {r.step for r in refs}
            if len(steps) < len(refs):
                refs[:] = dict.fromkeys(refs)
            elif spliced is not None and refs:
                spliced[(path,)] = "[" + ",".join(entries) + "]"
        return doc, keyed, tuple(inputs), tuple(held), spliced or None

    def said(self, shot: ir.Shot, start: int) -> _Said:
        """A shot's lines as the timelines hold them, from frame `start`; in a process that
        compiles again, made once for the same (timed) shot at the same place."""
        at = ("lines", id(shot), start)
        memo = self.b.memo
        if memo is not None:
            found = self.b.parts.get(at) or memo.parts.get(at)
            if found is not None and found[0] is shot:
                self.b.parts[at] = found
                return found[1]
        out = []
        for line in shot.lines:
            node = str(StepId.speech(shot.scene, shot.id, line.index))
            a = start + round(line.start * self.fps)
            out.append({"name": f"{shot.id}.{line.index}", "step": node,
                        "file": files.stem(files.speech_file(shot.id, line.index)),
                        "start": a, "frames": max(1, start + round(line.end * self.fps) - a),
                        "speaker": line.speaker, "paren": line.paren or "",
                        "text": line.text, "shot": shot.id, "scene": shot.scene,
                        "line": line.index, "key": self.b.keys[node]})
        refs = tuple(InputRef(e["step"], S.MEDIA) for e in out)
        said = _Said(out, refs, digest(canonical(out)))
        if memo is not None:
            said.inputs = ",".join(map(self.b.entry_text, refs))
            self.b.parts[at] = (shot, said)
        return said

    def part(self, f: _Facts, shot: str, holds: str, start: int, frames: int
             ) -> tuple[dict, tuple[InputRef, ...], tuple[InputRef, ...], _Texts]:
        """One shot's entry in a timeline export, the media it names that a whole build
        makes and those it does not (`held`), and its digest (with, in a process that
        compiles again, its media's entries in the key as text): made once for the same
        facts at the same place in the film (a one-shot edit makes one entry again, not
        3,000, and hashes one, not the whole cut)."""
        at = (id(f), shot, holds, start, frames)
        memo = self.b.memo
        if memo is not None:
            found = self.b.parts.get(at) or memo.parts.get(at)
            if found is not None and found[0] is f:
                self.b.parts[at] = found
                return found[1], found[2], found[3], found[4]
        refs = f.refs if holds == _EVERY else [f.active]
        doc = {"id": shot, "start": start, "frames": frames, "active": f.active["name"],
               "refs": refs}
        if holds == _EVERY:
            doc["meta"] = f.meta
        made = [(InputRef(r["step"], S.MEDIA), self.needed(r["step"])) for r in refs]
        strong = tuple(r for r, needed in made if needed)
        passed = tuple(r for r, needed in made if not needed)
        hashed = digest(canonical(doc))
        if memo is None:
            return doc, strong, passed, _Texts(hashed, [], [])
        entry = self.b.entry_text
        text = _Texts(hashed, [",".join(map(entry, strong))] if strong else [],
                      [",".join(map(entry, passed))] if passed else [])
        self.b.parts[at] = (f, doc, strong, passed, text)
        return doc, strong, passed, text

    # -- the shot list ---------------------------------------------------------------------

    def rows(self) -> tuple[list[list[Any]], list[str]]:
        """The shot list's rows, and each one's digest (how the key holds it); in a process
        that compiles again, each made once for the same shot, facts and picks."""
        out, digests = [], []
        memo = self.b.memo
        for scene in self.film.scenes:
            for shot in scene.shots:
                p = self.picks[(shot.scene, shot.id)]
                f = self.facts(scene, shot)
                at = (id(f), shot.id, "row", shot.number)
                if memo is not None:
                    found = self.b.parts.get(at) or memo.parts.get(at)
                    if found is not None and found[0] is f and found[1] is shot \
                            and found[2] == p:
                        self.b.parts[at] = found
                        out.append(found[3])
                        digests.append(found[4])
                        continue
                cam = shot.camera
                row = [
                    shot.number, shot.scene, shot.id, cam.size or "", cam.angle or "",
                    f"{_fraction(cam.lens_mm)}mm" if cam.lens_mm else "", cam.movement or "",
                    _light(shot.light),
                    ", ".join(f"{m.character}({m.outfit})" if m.outfit else m.character
                              for m in shot.cast),
                    _fraction(shot.duration), " ".join(p.keyframe.candidates),
                    _picked(p.keyframe), " ".join(p.clip.candidates), _picked(p.clip),
                    _status(p), "" if f.cost is None else f.cost, shot.action]
                out.append(row)
                digests.append(digest(canonical(row)))
                if memo is not None:
                    self.b.parts[at] = (f, shot, p, row, digests[-1])
        return out, digests


def _light(light: ir.Look) -> str:
    """The light as a person wrote it: its presets (their words are the prompt's), else
    its words."""
    return " ".join(light.presets) if light.presets else "; ".join(light.words)


def _picked(choice: Any) -> str:
    """The candidate a shot uses, when it is settled (picked, or the only one)."""
    return choice.used or "" if choice.status in (PICKED, SINGLE) else ""


def _status(p: ShotPicks) -> str:
    found = {p.keyframe.status, p.clip.status}
    return next(s for s in _STATUS_ORDER if s in found)


def _fraction(x: Fraction | None) -> str:
    """`24`, `23.976` as `24000/1001`, `1.5`: exact, and JSON."""
    if x is None:
        return ""
    if x.denominator == 1:
        return str(x.numerator)
    as_float = float(x)
    if Fraction(str(as_float)) == x:
        return str(as_float)
    return f"{x.numerator}/{x.denominator}"

