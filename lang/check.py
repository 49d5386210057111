"""Checks that need only the sources: names, attributes, values, files.

`check(project, diags)` collects every declaration into `Symbols` (reporting
duplicate ids), then validates every block against `lang.schema`: unknown
attributes and preset values with suggestions, typed literals, references to
characters, outfits, locations and presets, reference image files, and the
dialogue warnings.  It reports everything it finds and returns the symbols and
a summary for `filmc check` and the compiler.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import attrs

from . import ast, literals, schema
from .cues import check_effects, check_music, music_starts
from .diagnostics import Diagnostics, Label, did_you_mean, simplified, suggest
from .literals import BadLiteral
from .loader import Project, SourceFile, display_path
from .paths import PathProblem, check_name, check_target
from .tree import current as current_tree

DEFAULT_FPS = Fraction(24)
MAX_CANDIDATES = 32  # keyframe candidates a shot asks of one backend
MAX_TAKES = 16  # clips a shot makes from its picked keyframe
WORDS_PER_SECOND = 2.5  # a normal speaking rate in English (150 words a minute)
CJK_PER_SECOND = 4.5  # characters a second for Chinese and Japanese


@attrs.define
class Symbols:
    characters: dict[str, tuple[ast.Character, SourceFile]] = attrs.Factory(dict)
    outfits: dict[str, dict[str, ast.Name]] = attrs.Factory(dict)
    locations: dict[str, tuple[ast.Location, SourceFile]] = attrs.Factory(dict)
    times: dict[str, dict[str, ast.Name]] = attrs.Factory(dict)
    presets: dict[str, dict[str, tuple[ast.Preset, SourceFile]]] = attrs.Factory(
        lambda: {k: {} for k in schema.PRESET_KINDS})
    scenes: dict[str, tuple[ast.Scene, SourceFile]] = attrs.Factory(dict)
    shots: dict[str, tuple[ast.Shot, ast.Scene, SourceFile]] = attrs.Factory(dict)


@attrs.define
class Summary:
    title: str | None
    characters: int
    locations: int
    scenes: int
    shots: int
    runtime: Fraction

    def line(self, file: str) -> str:
        what = f'"{self.title}"' if self.title is not None else "(no film header)"
        n = lambda k, word: f"{k} {word}{'' if k == 1 else 's'}"  # noqa: E731
        return (f"{file}: {what}: {n(self.characters, 'character')}, "
                f"{n(self.locations, 'location')}, {n(self.scenes, 'scene')}, "
                f"{n(self.shots, 'shot')}, {literals.format_runtime(self.runtime)} runtime")


@attrs.define
class Checked:
    symbols: Symbols
    summary: Summary
    fps: Fraction


class _Bad(Exception):
    def __init__(self, message: str, span: ast.Span, label: str = "", help: str | None = None,
                 code: str = "F0301") -> None:
        super().__init__(message)
        self.message, self.span, self.label, self.help, self.code = message, span, label, help, code


@attrs.define(eq=False)
class CheckMemo:
    """What a process that checks the same film again keeps of its last check: each
    scene's diagnostics and length, put back while the scene is the same object (its
    file did not change) and so are the modules it may read (`Project.shared_modules`),
    at the same frame rate.  A scene whose check read a file (a music file, an image)
    is checked again every time: the file may have changed under the same text."""

    context: tuple = ()
    # id(scene) → (scene, its film's default duration, its diagnostics, its length, each
    # of its shots' lengths)
    scenes: dict[int, tuple[ast.Scene, object, Diagnostics, Fraction,
                            tuple[tuple[ast.Shot, Fraction], ...]]] = attrs.field(factory=dict)
    reused: int = 0
    made: int = 0

    def loaded(self) -> None:
        """Keyed again by the scenes' ids, once unpickled (filmc/memocache.py)."""
        self.scenes = {id(v[0]): v for v in self.scenes.values()}


def check(project: Project, diags: Diagnostics, memo: CheckMemo | None = None) -> Checked:
    """`memo`: what the last check of this film in this process kept (updated)."""
    checker = _Checker(project, diags)
    checker.memo = memo
    return checker.run()


class _Checker:
    def __init__(self, project: Project, diags: Diagnostics) -> None:
        self.project = project
        self.diags = diags
        self.sym = Symbols()
        self.fps = DEFAULT_FPS
        self._std_presets: dict[str, dict[str, str]] | None = None
        self._image_ok: dict[Path, str | None] = {}
        self._shot_seconds: dict[int, Fraction] = {}  # id(ast.Shot) → its length
        self.memo: CheckMemo | None = None
        self._last: dict[int, tuple] = {}  # the memo's scenes, when its context holds
        self._read_files = False  # whether the check read a file since this was cleared

    # -- pass 1: declarations ---------------------------------------------------------

    def run(self) -> Checked:
        self._collect()
        film = self.project.film
        film_duration: literals.Duration | None = None
        if film is not None:
            self._film_settings(film)
            self._items(film.items, "film", None)
            self._candidates(film.items)
            film_duration = self._duration_default(film.items)
        for decl, _f in self.project.decls():
            if isinstance(decl, ast.Character):
                self._items(decl.items, "character", None)
            elif isinstance(decl, ast.Location):
                self._items(decl.items, "location", None)
            elif isinstance(decl, ast.Preset) and decl.kind.text in schema.PRESET_KINDS:
                self._items(decl.items, f"preset {decl.kind.text}", None)
        self._preset_cycles()
        runtime = Fraction(0)
        shots = 0
        cues: list[tuple[ast.Attr, Fraction]] = []  # music lines and where they start
        memo = self.memo
        if memo is not None:
            context = (self.fps, *self.project.shared_modules())
            same = len(context) == len(memo.context) and context[0] == memo.context[0] and all(
                a is b for a, b in zip(context[1:], memo.context[1:]))
            self._last = memo.scenes if same else {}
            memo.context, memo.scenes, memo.reused, memo.made = context, {}, 0, 0
        for scene, _f in self.project.scenes:
            start = runtime
            runtime += self._kept_scene(scene, film_duration)
            cues += music_starts(scene, start,
                                 lambda shot: self._shot_seconds.get(id(shot), Fraction(0)))
            shots += len(scene.shots)
        check_music(cues, runtime, self.fps, self.diags, self._audio_file)
        self._continuity([shot for scene, _f in self.project.scenes for shot in scene.shots])
        summary = Summary(film.title.value if film else None, len(self.sym.characters),
                          len(self.sym.locations), len(self.project.scenes), shots, runtime)
        return Checked(self.sym, summary, self.fps)

    def _sub_names(self, items, key: str, kind: str, help: str) -> dict[str, ast.Name]:
        """The names of a declaration's `outfit NAME` / `at TIME` lines, reporting repeats."""
        names: dict[str, ast.Name] = {}
        for item in items:
            if isinstance(item, (ast.Attr, ast.Block)) and item.key.text == key and item.values \
                    and isinstance(item.values[0], ast.Name):
                name = item.values[0]
                if name.text in names:
                    self._dup(kind, name, names[name.text], help=help)
                else:
                    names[name.text] = name
        return names

    def _dup(self, kind: str, name: ast.Name, first: ast.Name, help: str | None = None) -> None:
        self.diags.error("F0210", f"{kind} `{name.text}` is defined twice", name.span,
                         f"a second {kind} `{name.text}`",
                         labels=[Label(first.span, "first defined here")],
                         help=help or "rename one of them: ids are global across all files of a film")

    def _collect(self) -> None:
        sym = self.sym
        for decl, f in self.project.decls():
            if isinstance(decl, ast.Character):
                if decl.id.text in sym.characters:
                    self._dup("character", decl.id, sym.characters[decl.id.text][0].id)
                    continue
                sym.characters[decl.id.text] = (decl, f)
                sym.outfits[decl.id.text] = self._sub_names(
                    decl.items, "outfit", "outfit", f"each outfit of `{decl.id.text}` needs its own name")
            elif isinstance(decl, ast.Location):
                if decl.id.text in sym.locations:
                    self._dup("location", decl.id, sym.locations[decl.id.text][0].id)
                    continue
                sym.locations[decl.id.text] = (decl, f)
                sym.times[decl.id.text] = self._sub_names(
                    decl.items, "at", "time of day", f"describe each time of day of `{decl.id.text}` once")
            elif isinstance(decl, ast.Preset):
                kind = decl.kind.text
                if kind not in schema.PRESET_KINDS:
                    self.diags.error("F0222", f"unknown preset kind `{kind}`", decl.kind.span,
                                     help=did_you_mean(kind, schema.PRESET_KINDS)
                                     or "presets are `camera`, `light` or `style`")
                    continue
                table = sym.presets[kind]
                if decl.id.text in table:
                    first, ff = table[decl.id.text]
                    help = None
                    if ff.role == "std" and f.role != "std":
                        help = f"`{decl.id.text}` comes from the standard library: give yours another name"
                    self._dup(f"{kind} preset", decl.id, first.id, help)
                    continue
                table[decl.id.text] = (decl, f)
            elif isinstance(decl, ast.Scene):
                if decl.id.text in sym.scenes:
                    self._dup("scene", decl.id, sym.scenes[decl.id.text][0].id)
                    continue
                sym.scenes[decl.id.text] = (decl, f)
        for scene, f in self.project.scenes:
            for shot in scene.shots:
                if shot.id.text in sym.shots:
                    self._dup("shot", shot.id, sym.shots[shot.id.text][0].id)
                    continue
                sym.shots[shot.id.text] = (shot, scene, f)

    # -- film settings -------------------------------------------------------------------

    def _film_settings(self, film: ast.Film) -> None:
        fps = ast.find_attr(film.items, "fps")
        if fps is not None and len(fps.values) == 1 and isinstance(fps.values[0], ast.Literal):
            try:
                v = literals.number(fps.values[0].text)
            except BadLiteral:
                v = None  # the attribute's own check reports it
            if v is not None and not 1 <= v <= 240:
                self.diags.error("F0303", f"{fps.values[0].text} frames per second is out of range",
                                 fps.values[0].span,
                                 help="films run at 1 to 240 fps; 24 is the cinema standard")
            elif v is not None:
                self.fps = v
        aspect = ast.find_attr(film.items, "aspect")
        size = ast.find_attr(film.items, "size")
        if aspect and size and len(aspect.values) == 1 and len(size.values) == 1:
            a, sz = aspect.values[0], size.values[0]
            if not (isinstance(a, ast.Literal) and isinstance(sz, ast.Literal)):
                return
            try:
                r = literals.ratio(a.text)
                w, h = literals.size(sz.text)
            except BadLiteral:
                return
            if abs(float(r) - w / h) > 0.02 * float(r):
                self.diags.warning(
                    "W0503", f"size {w}x{h} is {w / h:.2f}:1, not the aspect {a.text}",
                    sz.span, "does not match the aspect",
                    labels=[Label(a.span, "the aspect ratio")],
                    help=f"for {a.text} at width {w}, use height {_even(w / float(r))}")

    def _duration_default(self, items) -> literals.Duration | None:
        a = ast.find_attr(items, "duration")
        if a is None or len(a.values) != 1 or not isinstance(a.values[0], ast.Literal):
            return None
        try:
            return literals.duration(a.values[0].text)
        except BadLiteral:
            return None

    # -- scenes and shots --------------------------------------------------------------------

    def _kept_scene(self, scene: ast.Scene, film_duration: literals.Duration | None) -> Fraction:
        """`_scene`, or what it found last time (CheckMemo)."""
        memo = self.memo
        if memo is None:
            return self._scene(scene, film_duration)
        found = self._last.get(id(scene))
        if found is not None and found[0] is scene and found[1] == film_duration:
            _s, _d, said, total, shots = found
            self.diags.extend(said)
            self._shot_seconds.update((id(shot), seconds) for shot, seconds in shots)
            memo.scenes[id(scene)] = found
            memo.reused += 1
            return total
        real, self.diags = self.diags, Diagnostics()
        self._read_files = False
        try:
            total = self._scene(scene, film_duration)
            said = self.diags
        finally:
            self.diags = real
        real.extend(said)
        memo.made += 1
        if not self._read_files:
            memo.scenes[id(scene)] = (scene, film_duration, said, total, tuple(
                (shot, self._shot_seconds[id(shot)]) for shot in scene.shots))
        return total

    def _scene(self, scene: ast.Scene, film_duration: literals.Duration | None) -> Fraction:
        if scene.slug is not None:
            loc = scene.slug.location
            if loc.text not in self.sym.locations:
                self.diags.error("F0202", f"unknown location `{loc.text}`", loc.span,
                                 "not a declared location",
                                 help=did_you_mean(loc.text, self.sym.locations)
                                 or "declare it with `location ID \"Name\" {`")
            if scene.slug.time is not None:
                t = scene.slug.time
                if scene.slug.time_of_day not in schema.TIMES_OF_DAY:
                    self.diags.error("F0223", f"unknown time of day `{t.text}`", t.span,
                                     help=did_you_mean(t.text, (*schema.TIMES_OF_DAY,
                                                                *ast.CHINESE_TIMES))
                                     or "times of day are " + ", ".join(schema.TIMES_OF_DAY)
                                     + " (in Chinese " + "、".join(ast.CHINESE_TIMES) + ")")
        self._items(scene.items, "scene", None)
        self._candidates(scene.items)
        default = self._duration_default(scene.items) or film_duration
        default_cast = ast.find_attr(scene.items, "cast")
        total = Fraction(0)
        for shot in scene.shots:
            total += self._shot(shot, default, default_cast)
        return total

    def _shot(self, shot: ast.Shot, default: literals.Duration | None,
              default_cast: ast.Attr | None) -> Fraction:
        seconds: Fraction | None = None
        if shot.duration is not None:
            try:
                seconds = literals.duration(shot.duration.text).at(self.fps)
            except BadLiteral as e:
                self.diags.error("F0301", e.message, shot.duration.span, "the shot's duration",
                                 help=e.help)
        elif default is not None:
            seconds = default.at(self.fps)
        else:
            self.diags.error("F0310", f"shot `{shot.id.text}` has no duration", shot.id.span,
                             help=f"write it in the header: `shot {shot.id.text} 4s {{`, or set "
                                  f"`duration` on the scene or film")
        cast = ast.find_attr(shot.items, "cast") or default_cast
        self._items(shot.items, "shot", shot)
        self._candidates(shot.items)
        self._framing(shot, cast)
        self._dialogue(shot, cast, seconds)
        check_effects(shot, seconds, self.fps, self.diags)
        self._shot_seconds[id(shot)] = seconds or Fraction(0)
        return seconds or Fraction(0)

    def _candidates(self, items) -> None:
        """One `candidates` line a backend in a block (a line without one means the shot's
        keyframe backend)."""
        seen: dict[str, ast.Attr] = {}
        for a in ast.attrs_of(items):
            if a.key.text != "candidates" or not a.values:
                continue
            name = ast.value_text(a.values[1]) if len(a.values) > 1 else ""
            if name in seen:
                what = f"`{name}`" if name else "the keyframe backend"
                self.diags.error("F0226", f"two `candidates` lines for {what}", a.span,
                                 labels=[Label(seen[name].span, "first here")],
                                 help="add the counts up on one line: "
                                      f"`candidates N{' ' + name if name else ''}`")
            else:
                seen[name] = a

    def _framing(self, shot: ast.Shot, cast: ast.Attr | None) -> None:
        in_cast = {v.name.text if isinstance(v, ast.Ref) else getattr(v, "text", None)
                   for v in (cast.values if cast is not None else ())}
        seen: dict[str, ast.Attr] = {}
        for a in ast.attrs_of(shot.items):
            if a.key.text != "framing" or not a.values or not isinstance(a.values[0], ast.Name):
                continue
            who = a.values[0]
            if who.text not in self.sym.characters:
                self.diags.error("F0201", f"unknown character `{who.text}`", who.span,
                                 "not a declared character",
                                 help=did_you_mean(who.text, self.sym.characters)
                                 or "`framing` names a character of the shot's cast")
            elif who.text in seen:
                self.diags.error("F0221", f"the framing of `{who.text}` is set twice", a.span,
                                 labels=[Label(seen[who.text].span, "first set here")],
                                 help="keep one line: a character is framed one way in a shot")
            elif who.text not in in_cast:
                self.diags.warning("W0504", f"`{who.text}` is framed but not in the shot's cast",
                                   who.span, "not in the cast",
                                   help=f"add `{who.text}` to the shot's `cast`, or remove the line")
            seen[who.text] = a

    def _continuity(self, shots: list[ast.Shot]) -> None:
        """`first_frame previous` needs a shot before; `last_frame next` a shot after that
        has a keyframe of its own."""
        for i, shot in enumerate(shots):
            first = ast.find_attr(shot.items, "first_frame")
            if first is not None and i == 0:
                self.diags.error("F0311", "`first_frame previous` in the film's first shot",
                                 first.span, "no shot before this one",
                                 help="remove the line: the first shot starts from its own keyframe")
            wanted = ast.find_attr(shot.items, "candidates")
            if first is not None and wanted is not None:
                self.diags.warning("W0505", "keyframe candidates in a shot that starts from the "
                                   "shot before's last frame", wanted.span,
                                   "no keyframe is made for this shot",
                                   labels=[Label(first.span, "its clip starts here instead")],
                                   help="remove the `candidates` lines, or `first_frame previous`")
            last = ast.find_attr(shot.items, "last_frame")
            if last is None:
                continue
            after = shots[i + 1] if i + 1 < len(shots) else None
            if after is None:
                self.diags.error("F0311", "`last_frame next` in the film's last shot", last.span,
                                 "no shot after this one", help="remove the line")
            elif ast.find_attr(after.items, "first_frame") is not None:
                self.diags.error("F0311", f"`last_frame next`, but shot `{after.id.text}` has no "
                                 "keyframe of its own", last.span,
                                 labels=[Label(after.id.span, "starts from this shot's last frame")],
                                 help="the next shot continues this one already: remove one of "
                                      "the two lines")

    def _id_named(self, text: str) -> str | None:
        """The id of the character whose display name is `text` (`林梅` → `MEI`), if one is:
        the same name, or the same in traditional or simplified characters."""
        want = simplified(text).casefold()
        if any(simplified(cid).casefold() == want for cid in self.sym.characters):
            return None  # the id itself, misspelt: did-you-mean says so
        for cid, (c, _f) in self.sym.characters.items():
            if c.name is not None and (c.name.value == text
                                       or simplified(c.name.value).casefold() == want):
                return cid
        return None

    def _dialogue(self, shot: ast.Shot, cast: ast.Attr | None, seconds: Fraction | None) -> None:
        in_cast = set()
        if cast is not None:
            for v in cast.values:
                in_cast.add(v.name.text if isinstance(v, ast.Ref) else getattr(v, "text", None))
        lines = [i for i in shot.items if isinstance(i, ast.Dialogue)]
        for line in lines:
            who = line.speaker.text
            if who not in self.sym.characters:
                by_name = self._id_named(who)
                self.diags.error("F0201", f"unknown character `{who}`", line.speaker.span,
                                 f"the name of `{by_name}`, not its id" if by_name
                                 else "not a declared character",
                                 help=f"a speaker is written by id: `{by_name}: \"...\"`"
                                 if by_name else did_you_mean(who, self.sym.characters)
                                 or "declare it with `character ID \"Name\" {`")
            elif who not in in_cast and not _off_screen(line.paren):
                self.diags.warning(
                    "W0501", f"`{who}` speaks but is not in the shot's cast", line.speaker.span,
                    labels=[Label(cast.span, "the cast")] if cast is not None else (),
                    help=f"add `{who}` to the shot's `cast`, or make the line a voice-over "
                         f"with `{who} (V.O.): \"...\"`" if cast is not None
                    else f"add `cast {who}` to the shot")
        if lines and seconds is not None:
            need = sum(speaking_time(line.text.value) for line in lines)
            if need > float(seconds) + 1e-9:
                first = lines[0]
                self.diags.warning(
                    "W0502", f"dialogue needs about {need:.1f}s but shot `{shot.id.text}` lasts "
                    f"{literals.format_runtime(seconds)}",
                    first.span.to(lines[-1].span) if len(lines) > 1 else first.span,
                    "too much to say at a normal speaking rate",
                    help=f"lengthen the shot to `{_ceil_half(need)}s`, trim the lines, or split "
                         f"the shot")

    # -- blocks and attributes --------------------------------------------------------------------

    def _items(self, items, spec_key: str, shot: ast.Shot | None) -> None:
        spec = schema.BLOCKS[spec_key]
        seen: dict[str, ast.Attr] = {}
        for item in items:
            if isinstance(item, ast.Shot):
                continue
            if isinstance(item, ast.Dialogue):
                if not spec.dialogue:
                    self.diags.error("F0224", f"dialogue in a {spec.name}", item.span,
                                     help="dialogue lines belong inside a `shot`")
                continue
            key = item.key.text
            if isinstance(item, ast.Block):
                header = spec.blocks.get(key)
                if header is None:
                    self._unknown(item.key, spec, block=True)
                    continue
                self._values(item, header.sig, key, spec_key)
                self._items(item.items, header.body, shot)
                continue
            aspec = spec.attrs.get(key)
            if aspec is None:
                self._unknown(item.key, spec)
                continue
            if not aspec.repeat:
                if key in seen:
                    self.diags.error("F0221", f"`{key}` is set twice in this {spec.name}",
                                     item.key.span, labels=[Label(seen[key].key.span, "first set here")],
                                     help="keep one line: a later line does not add to an earlier one")
                    continue
                seen[key] = item
            self._values(item, aspec.sig, key, spec_key)

    def _unknown(self, key: ast.Name, spec: schema.BlockSpec, block: bool = False) -> None:
        names = list(spec.attrs) + list(spec.blocks)
        help = did_you_mean(key.text, names)
        if key.text == "duration" and spec.name == "shot":
            help = "a shot's duration goes in its header: `shot ID 4s {`"
        elif key.text in ("shot", "scene", "character", "location", "film", "preset", "use"):
            help = f"`{key.text}` declarations cannot go inside a {spec.name}"
        elif help is None:
            help = f"a {spec.name} takes " + ", ".join(f"`{n}`" for n in names)
        what = "block" if block else "attribute"
        self.diags.error("F0220", f"unknown {what} `{key.text}` in a {spec.name}", key.span,
                         f"not a {spec.name} {what}", help=help)

    def _values(self, item: ast.Attr | ast.Block, sig: tuple[str, ...], key: str, ctx: str) -> None:
        values = item.values
        many = sig[-1][-1] in "+*"
        optional = sig[-1][-1] in "?*"
        types = [t.rstrip("+?*") for t in sig]
        lo = sum(1 for t in sig if t[-1] not in "?*") if optional else len(types)
        hi = None if many else len(types)
        if types == ["string"] and len(values) > 1 and not any(isinstance(v, ast.Str)
                                                               for v in values):
            words = _rejoin(values)
            self.diags.error("F0302", f"`{key}` takes a quoted string", values[0].span.to(
                values[-1].span), "unquoted words",
                             help=f'put the words in double quotes: `{key} "{words}"`')
            return
        if len(values) < lo or (hi is not None and len(values) > hi):
            doc = schema.BLOCKS[ctx].attrs.get(key) or schema.BLOCKS[ctx].blocks.get(key)
            span = values[hi].span.to(values[-1].span) if hi is not None and len(values) > hi \
                else item.key.span
            expect = _expect_words(types)
            self.diags.error("F0302", f"`{key}` takes {expect}{' (one or more)' if many else ''}",
                             span, "extra value" if hi is not None and len(values) > hi
                             else "missing value",
                             help=f"`{key}`: {doc.doc}" if doc else None)
            return
        slots: dict[str, ast.Value] = {}
        for i, v in enumerate(values):
            t = types[min(i, len(types) - 1)]
            try:
                self._value(t, v, key, slots)
            except _Bad as e:
                self.diags.error(e.code, e.message, e.span, e.label, help=e.help)
        if key == "cast":
            self._cast_repeats(values)

    def _cast_repeats(self, values) -> None:
        seen: dict[str, ast.Value] = {}
        for v in values:
            who = v.name.text if isinstance(v, ast.Ref) else getattr(v, "text", "")
            if who in seen:
                self.diags.error("F0225", f"`{who}` is in the cast twice", v.span,
                                 labels=[Label(seen[who].span, "first here")],
                                 help="a character appears once in a shot, in one outfit")
            seen[who] = v

    def _value(self, t: str, v: ast.Value, key: str, slots: dict[str, ast.Value]) -> None:
        if t == "string":
            if not isinstance(v, ast.Str):
                raise _Bad(f"`{key}` takes text in quotes", v.span, "not a string",
                           help=f'write `{key} "{ast.value_text(v)}"`' if not isinstance(v, ast.Ref) else None)
            return
        if t == "path":
            if not isinstance(v, ast.Str):
                raise _Bad(f"`{key}` takes a file path in quotes", v.span, "not a string",
                           help=f'write `{key} "refs/image.png"`')
            if key == "ref":
                self._ref_file(v)
            return
        if t in _LITERAL_READERS:
            if not isinstance(v, ast.Literal):
                raise _Bad(f"`{key}` takes {_TYPE_WORDS[t]}", v.span, f"not {_TYPE_WORDS[t]}",
                           help=_LITERAL_EXAMPLES[t])
            try:
                parsed = _LITERAL_READERS[t](v.text)
            except BadLiteral as e:
                raise _Bad(e.message, v.span, help=e.help) from None
            if not isinstance(parsed, int):
                return
            if key == "takes" and parsed < 1:
                raise _Bad(f"`takes {v.text}`: a shot needs at least one take", v.span,
                           help="write `takes 1` or more", code="F0304")
            if key == "takes" and parsed > MAX_TAKES:
                raise _Bad(f"`takes {v.text}`: at most {MAX_TAKES} takes a shot", v.span,
                           help=f"write `takes {MAX_TAKES}` or fewer; each take is a paid video "
                                "generation", code="F0304")
            if key == "candidates" and not 1 <= parsed <= MAX_CANDIDATES:
                raise _Bad(f"`candidates {v.text}`: from 1 to {MAX_CANDIDATES} a backend",
                           v.span, help="write `candidates 1` or more; leave a backend out by "
                           "not naming it", code="F0304")
            if key == "seed" and not 0 <= parsed < 2**63:
                raise _Bad(f"seed `{v.text}` is out of range", v.span,
                           help="seeds are whole numbers from 0 to 2^63-1", code="F0304")
            return
        if t == "color":
            if not isinstance(v, ast.Color):
                raise _Bad(f"`{key}` takes colours", v.span, "not a colour", help="write `#rrggbb`")
            try:
                literals.color(v.text)
            except BadLiteral as e:
                raise _Bad(e.message, v.span, help=e.help) from None
            return
        if t == "tag":
            if not isinstance(v, (ast.Name, ast.Str)):
                raise _Bad("tags are names or strings", v.span)
            return
        if t in ("camera", "light", "style"):
            self._preset_value(t, v, key, slots)
            return
        if t == "cast":
            self._cast_value(v)
            return
        enums = {"step": schema.STEP_KINDS, "motion": schema.MOTIONS, "slot": schema.CAMERA_SLOTS,
                 "time": schema.TIMES_OF_DAY, "direction": schema.KEY_DIRECTIONS,
                 "framing": schema.FRAMINGS, "being": schema.BEINGS, "previous": ("previous",), "next": ("next",),
                 "at": ("at",), "for": ("for",)}
        if t in enums:
            choices = enums[t]
            if not isinstance(v, ast.Name) or v.text not in choices:
                text = ast.value_text(v)
                if len(choices) == 1:
                    example = {"at": ' "ice cracks" at 2.5s', "for": ' "tense drums" for 20s'}
                    raise _Bad(f"`{key}` takes the word `{choices[0]}`", v.span,
                               help=f"write `{key}{example.get(t, ' ' + choices[0])}`")
                raise _Bad(f"unknown {_TYPE_WORDS[t]} `{text}`", v.span,
                           help=did_you_mean(text, choices) or
                           f"{_TYPE_WORDS[t]}s are " + ", ".join(f"`{c}`" for c in choices))
            return
        if t == "name":
            if not isinstance(v, ast.Name):
                raise _Bad(f"`{key}` takes a name here", v.span, "not a name",
                           help="names start with a letter and hold letters, digits and `_`")
            return
        raise AssertionError(f"unknown value type {t}")

    def _preset_value(self, kind: str, v: ast.Value, key: str, slots: dict[str, ast.Value]) -> None:
        if isinstance(v, ast.Str):
            return
        if kind == "camera" and isinstance(v, ast.Literal):
            try:
                literals.lens(v.text)
            except BadLiteral as e:
                raise _Bad(e.message, v.span, help=e.help) from None
            self._slot("lens", v, slots)
            return
        if not isinstance(v, ast.Name):
            raise _Bad(f"`{key}` takes {kind} preset names", v.span, f"not a {kind} preset",
                       help='extra prompt words go in quotes: `"..."`')
        table = self.sym.presets[kind]
        if v.text not in table:
            help = did_you_mean(v.text, table)
            if help is None:
                module = self._std_module_of(kind, v.text)
                if module:
                    help = f"`{v.text}` is in `std.{module}`: add `use std.{module}`"
            raise _Bad(f"unknown {kind} preset `{v.text}`", v.span, f"not a {kind} preset",
                       help=help or f"define it with `preset {kind} {v.text} {{`", code="F0204")
        if kind == "camera":
            for slot in self._camera_slots(v.text, set()):
                self._slot(slot, v, slots)

    def _camera_slots(self, name: str, seen: set[str]) -> list[str]:
        """The slots a camera preset sets, looking inside bundles (`camera a b`)."""
        table = self.sym.presets["camera"]
        if name in seen or name not in table:
            return []
        seen.add(name)
        items = table[name][0].items
        out = []
        slot = ast.find_attr(items, "slot")
        if slot and slot.values and isinstance(slot.values[0], ast.Name):
            out.append(slot.values[0].text)
        if ast.find_attr(items, "lens"):
            out.append("lens")
        inc = ast.find_attr(items, "camera")
        for v in inc.values if inc else ():
            if isinstance(v, ast.Name):
                out += self._camera_slots(v.text, seen)
            elif isinstance(v, ast.Literal):
                out.append("lens")
        return list(dict.fromkeys(out))

    def _slot(self, slot: str, v: ast.Value, slots: dict[str, ast.Value]) -> None:
        if slot in slots:
            first = slots[slot]
            raise _Bad(f"the camera's {slot} is set twice: `{ast.value_text(first)}` and "
                       f"`{ast.value_text(v)}`", v.span, f"a second {slot}",
                       help=f"keep one {slot} on the line", code="F0230")
        slots[slot] = v

    def _cast_value(self, v: ast.Value) -> None:
        name = v.name if isinstance(v, ast.Ref) else v
        if not isinstance(name, ast.Name):
            raise _Bad("a cast lists character ids", v.span, "not a character",
                       help="write `cast CHEN(winter), WOLF`")
        if name.text not in self.sym.characters:
            by_name = self._id_named(name.text)
            if by_name:
                raise _Bad(f"unknown character `{name.text}`", name.span,
                           f"the name of `{by_name}`, not its id",
                           help=f"a cast lists characters by id: `{by_name}`", code="F0201")
            raise _Bad(f"unknown character `{name.text}`", name.span, "not a declared character",
                       help=did_you_mean(name.text, self.sym.characters)
                       or "declare it with `character ID \"Name\" {`", code="F0201")
        if isinstance(v, ast.Ref):
            outfits = self.sym.outfits.get(name.text, {})
            if v.arg.text not in outfits:
                raise _Bad(f"`{name.text}` has no outfit `{v.arg.text}`", v.arg.span,
                           "not one of their outfits",
                           help=did_you_mean(v.arg.text, outfits) or (
                               f"`{name.text}`'s outfits are " + ", ".join(f"`{o}`" for o in outfits)
                               if outfits else f"declare it in `character {name.text}` with "
                                               f"`outfit {v.arg.text} \"...\"`"),
                           code="F0203")

    def _std_module_of(self, kind: str, name: str) -> str | None:
        """Which standard module defines a preset, for `add use std.X` hints."""
        if self._std_presets is None:
            from .diagnostics import Diagnostics as _D
            from .loader import Loader, std_modules

            self._std_presets = {k: {} for k in schema.PRESET_KINDS}
            loader = Loader(_D())
            for mod in std_modules():
                found = loader._read_std(mod, ast.NO_SPAN)
                if found and found[2]:
                    for d in found[2].decls:
                        if isinstance(d, ast.Preset) and d.kind.text in self._std_presets:
                            self._std_presets[d.kind.text][d.id.text] = mod
        return self._std_presets.get(kind, {}).get(name)

    # -- reference files -----------------------------------------------------------------------

    def _audio_file(self, v: ast.Str) -> None:
        """A music file: inside the project, and there (its content is ffmpeg's to read)."""
        try:
            self._ref_file(v, audio=True)
        except _Bad as e:
            self.diags.error(e.code, e.message, e.span, e.label, help=e.help)

    def _ref_file(self, v: ast.Str, audio: bool = False) -> None:
        self._read_files = True
        rel = v.value
        base = self._file_dir(v.span.file)
        if base is None:
            return
        if not rel:
            raise _Bad("empty reference path", v.span, code="F0401")
        if os.path.isabs(rel) or rel.startswith("~"):
            raise _Bad(f"reference path `{rel}` is absolute", v.span,
                       "absolute paths break on every other machine",
                       help="write the path relative to this file", code="F0403")
        try:
            check_name(rel, "reference")
        except PathProblem as e:
            raise _Bad(e.message, v.span, e.label, help=e.help, code=e.code) from None
        path = Path(os.path.normpath(base / rel))
        root = self.project.root
        try:
            path.relative_to(root)
        except ValueError:
            raise _Bad(f"reference path `{rel}` leaves the project folder", v.span,
                       "outside the project folder",
                       help="copy the image into the project folder: the main film file's folder, "
                            "or the folder that holds `filmc.toml`", code="F0404") from None
        try:
            check_target(path, root, rel, "reference")
        except PathProblem as e:
            raise _Bad(e.message, v.span, e.label, help=e.help, code=e.code) from None
        tree = current_tree()
        if not tree.is_file(path):
            if tree.is_dir(path.parent):
                near = suggest(path.name, tree.listdir(path.parent))
                help = (f"did you mean `{os.path.join(os.path.dirname(rel), near)}`?" if near
                        else f"no file of that name in `{display_path(path.parent)}`")
            else:
                help = f"the folder `{display_path(path.parent)}` does not exist"
            raise _Bad(f"{'audio file' if audio else 'reference image'} `{rel}` does not exist",
                       v.span, "no such file", help=help, code="F0401")
        if audio:
            return
        problem = self._image_problem(path)
        if problem:
            raise _Bad(f"reference `{rel}` is not a usable image: {problem}", v.span,
                       help="reference images are PNG, JPEG or WebP files", code="F0402")

    def _file_dir(self, display: str) -> Path | None:
        for f in self.project.files:
            if f.display == display:
                return None if f.role == "std" else f.path.parent
        return None

    def _image_problem(self, path: Path) -> str | None:
        if path not in self._image_ok:
            from PIL import Image, UnidentifiedImageError

            problem = None
            try:
                with Image.open(io.BytesIO(current_tree().read_bytes(path))) as im:
                    im.verify()
            except UnidentifiedImageError:
                problem = "not an image format filmc can read"
            except Exception as e:  # a damaged file raises many kinds of errors
                problem = f"the file is damaged ({e.__class__.__name__})"
            self._image_ok[path] = problem
        return self._image_ok[path]

    # -- preset bundles ------------------------------------------------------------------------

    def _preset_cycles(self) -> None:
        for kind, table in self.sym.presets.items():
            state: dict[str, int] = {}
            for name in table:
                self._visit_bundle(kind, table, name, [], state)

    def _visit_bundle(self, kind: str, table: dict, name: str, path: list[str],
                      state: dict[str, int]) -> None:
        """Depth-first walk of `camera a b` inclusions; 1 = on the path, 2 = done."""
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            self.diags.error("F0231", f"{kind} presets include each other: " + " --> ".join(cycle),
                             table[name][0].id.span,
                             help="a bundle cannot include itself, directly or not")
            return
        state[name] = 1
        inc = ast.find_attr(table[name][0].items, kind)
        for v in inc.values if inc else ():
            if isinstance(v, ast.Name) and v.text in table:
                self._visit_bundle(kind, table, v.text, path + [name], state)
        state[name] = 2


_LITERAL_READERS = {
    "int": literals.integer,
    "number": literals.number,
    "duration": literals.duration,
    "size": literals.size,
    "ratio": literals.ratio,
    "lens": literals.lens,
}
_LITERAL_EXAMPLES = {
    "int": "write a whole number such as `2`",
    "number": "write a number such as `24` or `0.85`",
    "duration": literals._DURATION_HELP,
    "size": "write width x height: `1920x1080`",
    "ratio": "write width:height: `2.39:1`",
    "lens": "write a focal length: `35mm`",
}
_TYPE_WORDS = {
    "string": "a quoted string", "path": "a file path in quotes", "name": "a name",
    "int": "a whole number", "number": "a number", "duration": "a duration",
    "size": "a frame size", "ratio": "an aspect ratio", "lens": "a lens", "color": "a colour",
    "camera": "camera presets", "light": "light presets", "style": "style presets",
    "cast": "characters", "tag": "tags", "step": "step kind", "motion": "camera motion",
    "slot": "camera slot", "time": "time of day", "direction": "key direction",
    "framing": "framing", "being": "character kind", "previous": "`previous`", "next": "`next`",
    "at": "`at`", "for": "`for`",
}


def speaking_time(text: str) -> float:
    """Seconds to say `text` at a normal rate: words for alphabetic text, characters for CJK."""
    cjk = sum(1 for c in text if "\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff"
              or "\uac00" <= c <= "\ud7af" or "\uf900" <= c <= "\ufaff")
    rest = "".join(" " if ("\u3040" <= c <= "\u9fff") else c for c in text)
    words = len([w for w in rest.split() if any(ch.isalnum() for ch in w)])
    return words / WORDS_PER_SECOND + cjk / CJK_PER_SECOND


def _expect_words(types: list[str]) -> str:
    """`a name and a quoted string`; a run of one type reads `4 colours`."""
    runs: list[list] = []
    for t in types:
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    words = []
    for t, k in runs:
        word = _TYPE_WORDS.get(t, t)
        if k > 1:
            word = f"{k} {word.split(' ', 1)[1]}s"
        words.append(word)
    return " and ".join(words)


def _rejoin(values) -> str:
    """Unquoted words as the text they were, as near as their columns tell: a gap of one
    column is a space (between Chinese words, the `，` that split them), wider a comma."""
    out = ""
    prev = None
    for v in values:
        text: str = v.name.text if isinstance(v, ast.Ref) else v.value if isinstance(v, ast.Str) \
            else v.text
        if prev is not None:
            gap = v.span.col - prev.span.end_col if v.span.line == prev.span.line else 1
            out += ("，" if out[-1] > "\u2e80" and text[:1] > "\u2e80" else " ") if gap <= 1 \
                else ", "
        out += text
        prev = v
    return out


def _off_screen(paren: str | None) -> bool:
    if not paren:
        return False
    first = paren.split(",")[0].strip()
    return first in schema.OFF_SCREEN or first.upper() in schema.OFF_SCREEN


def _ceil_half(x: float) -> str:
    import math

    v = math.ceil(x * 2) / 2
    return f"{v:g}"


def _even(x: float) -> int:
    n = int(round(x))
    return n + (n % 2)
