"""A screenplay (lang/fountain.py) → the first breakdown of a film: `.film` sources.

    files = breakdown(play, title=None)    # {"film.film": text, "cast.film": text,
                                           #  "scenes/01_sc1.film": text, ...}

What becomes what:

- the title page → the film header: `Title` its title, the other keys notes;
- each scene heading → a `scene`, its id from the scene number (`#1A#` → `sc1A`) or
  its place in the script (`s03`), its heading as written its title, and a slug
  when the heading has a setting: `INT`/`EXT`/`INT/EXT` (`EST.` is `EXT`) or the
  Chinese setting as written, the location, and the time of day when the
  language knows it (`DAWN`, `黄昏`…; another is a note);
- each place → one `location`, however many headings name it;
- each character cue → one `character` (`V.O.`, `O.S.` and other extensions go to
  the line's parenthetical; `CONT'D` is dropped), whose `look` is the sentence of
  the action that first names them;
- each action paragraph → a shot: that beat, then the dialogue that follows it,
  with the speakers in frame as its cast and a duration from the words (what the
  action takes to play, what the lines take to say; whole half seconds, 2 s at
  least);
- dialogue → dialogue lines, one per parenthetical; lyrics inside a speech are
  sung (`(sung)`); dual dialogue is two lines and a note;
- notes, the boneyard, sections, synopses outside a scene's start, page breaks
  → `//` comments where they stood; a synopsis that opens a scene → its `note`;
- transitions, centered text and lyrics outside a speech → notes of the shot they
  follow (comments before the first shot of a scene).

Every file comes out as `filmc fmt` lays it out.
"""

from __future__ import annotations

import math
import re
import unicodedata

import attrs

from . import fountain as F
from .ast import CHINESE_SETTINGS, CHINESE_TIMES, quote
from .check import _off_screen, speaking_time  # what `check` calls off screen
from .diagnostics import Diagnostics
from .fmt import format_text
from .schema import TIMES_OF_DAY

# English times of day a heading writes another way.
_TIME_WORDS = {"GOLDEN HOUR": "GOLDEN_HOUR", "MOMENTS LATER": "LATER", "A LITTLE LATER": "LATER",
               "CONT": "CONTINUOUS", "CONT'D": "CONTINUOUS", "CONTINUED": "CONTINUOUS",
               "SUNUP": "SUNRISE", "SUNDOWN": "SUNSET", "TWILIGHT": "DUSK", "DAYTIME": "DAY",
               "NIGHTTIME": "NIGHT", "LATE NIGHT": "NIGHT", "EARLY MORNING": "MORNING"}
# Chinese times of day beyond those the language reads as written (ast.CHINESE_TIMES).
_CHINESE_TIME_WORDS = {"白天": "DAY", "白日": "DAY", "晚上": "NIGHT", "夜晚": "NIGHT", "深夜": "NIGHT",
                       "清晨": "DAWN", "凌晨": "DAWN", "早晨": "MORNING", "早上": "MORNING",
                       "上午": "MORNING", "中午": "NOON", "下午": "AFTERNOON", "傍晚": "DUSK",
                       "日出": "SUNRISE", "日落": "SUNSET", "午夜": "MIDNIGHT", "晨": "DAWN",
                       "晚": "EVENING"}
_DROP = {"CONT'D", "CONT’D", "CONT.", "CONTD", "CONTINUED", "继续", "繼續"}
ACTION_WORDS_PER_SECOND = 3.0  # a screenplay page of action plays about a minute
CJK_ACTION_PER_SECOND = 5.0
MIN_SHOT = 2.0


@attrs.define
class _Shot:
    id: str
    action: str = ""
    lines: list[tuple[str, str, str]] = attrs.field(factory=list)  # (character, paren, text)
    cast: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    comments: list[str] = attrs.field(factory=list)  # before the shot


@attrs.define
class _Scene:
    id: str
    title: str
    slug: str = ""
    notes: list[str] = attrs.field(factory=list)
    comments: list[str] = attrs.field(factory=list)  # before the scene
    shots: list[_Shot] = attrs.field(factory=list)
    trailing: list[str] = attrs.field(factory=list)  # after its last shot


@attrs.define
class _Character:
    id: str
    name: str
    look: str = ""


class _Breakdown:
    def __init__(self, play: F.Screenplay) -> None:
        self.play = play
        self.scenes: list[_Scene] = []
        self.characters: dict[str, _Character] = {}
        self.locations: dict[str, tuple[str, str]] = {}  # id → (display name, look)
        self.pending: list[str] = []  # comments waiting for the next scene or shot
        self.shot_ids: set[str] = set()
        self.scene_ids: set[str] = set()
        self.order = 0
        self.actions = [e.text for e in play.elements if isinstance(e, F.Action)]

    # -- scenes and shots --------------------------------------------------------------------

    def scene(self, h: F.Heading | None) -> _Scene:
        self.order += 1
        if h is not None and h.number:
            sid = _unique("sc" + _ident(h.number, ""), self.scene_ids)
        else:
            sid = _unique(f"s{self.order:02d}", self.scene_ids)
        title = F.plain(h.text) if h is not None else "Before the first scene"
        sc = _Scene(sid, title, comments=self.pending)
        self.pending = []
        if h is not None and h.setting is not None:
            sc.slug = self.slug(h, sc)
        self.scenes.append(sc)
        return sc

    def slug(self, h: F.Heading, sc: _Scene) -> str:
        setting = h.setting or ""
        chinese = setting in CHINESE_SETTINGS
        slug_setting = setting if chinese else ("EXT" if setting == "EST" else setting)
        if setting == "EST":
            sc.notes.append("establishing (EST.)")
        time = None
        place = F.plain(h.place).strip(" -–—.") or sc.title
        if h.time is not None:
            time = _time(F.plain(h.time))
            if time is None:
                sc.notes.append(f"time: {F.plain(h.time)}")
        loc = _ident(place.upper() if not _cjk(place) else place, "L_")
        name = _title_case(place) if place.isupper() else place
        self.locations.setdefault(loc, (name, place.lower() if place.isupper() else place))
        return " ".join(x for x in (slug_setting, loc, time) if x)

    def shot(self, sc: _Scene) -> _Shot:
        shot = _Shot(_unique(f"{sc.id}_{len(sc.shots) + 1}", self.shot_ids),
                     comments=self.pending)
        self.pending = []
        sc.shots.append(shot)
        return shot

    def character(self, d: F.Dialogue) -> str:
        name = F.plain(d.name).strip()
        cid = _ident(name if d.forced or _cjk(name) else name.upper(), "C_")
        if cid not in self.characters:
            shown = _title_case(name) if name.isupper() else name
            self.characters[cid] = _Character(cid, shown, self.introduction(name))
        return cid

    def introduction(self, name: str) -> str:
        """The sentence of the action that first names a character: how a screenplay
        introduces someone (`OLD HAN, seventies, coils a rope...`)."""
        words = [name] + ([name.split()[-1]] if " " in name else [])
        for text in self.actions:
            for word in words:
                pat = re.escape(word) if _cjk(word) else rf"(?<!\w){re.escape(word)}(?!\w)"
                m = re.search(pat, text, flags=re.I)
                if m:
                    return _sentence(F.plain(text), m.start())
        return ""

    # -- the walk ----------------------------------------------------------------------------

    def run(self) -> None:
        sc: _Scene | None = None
        shot: _Shot | None = None
        last_speaker: str | None = None
        for e in self.play.elements:
            if isinstance(e, F.Heading):
                if sc is not None:
                    sc.trailing += self.pending
                    self.pending = []
                sc, shot, last_speaker = self.scene(e), None, None
            elif isinstance(e, F.Synopsis):
                if sc is not None and shot is None and not self.pending:
                    sc.notes.append(F.plain(e.text))
                else:
                    self.pending.append(f"= {e.text}")
            elif isinstance(e, F.Section):
                self.pending.append(f"{'#' * e.level} {e.text}")
            elif isinstance(e, F.Note):
                self.pending += [f"note: {e.text}"]
            elif isinstance(e, F.Boneyard):
                self.pending += ["/*", *e.text.split("\n"), "*/"]
            elif isinstance(e, F.PageBreak):
                self.pending.append("=== (page break)")
            elif isinstance(e, F.Transition | F.Lyrics) or \
                    (isinstance(e, F.Action) and e.centered):
                what = {F.Transition: "transition", F.Lyrics: "lyrics"}.get(type(e), "centered")
                text = F.plain(e.text).replace("\n", " / ")
                if shot is not None:
                    shot.notes.append(f"{what}: {text}")
                else:
                    self.pending.append(f"{what}: {text}")
            elif isinstance(e, F.Action):
                if sc is None:
                    sc = self.scene(None)
                shot = self.shot(sc)
                shot.action = _join(F.plain(e.text))
                shot.comments += [f"note: {n}" for n in e.notes]
                last_speaker = None
            elif isinstance(e, F.Dialogue):
                if sc is None:
                    sc = self.scene(None)
                if shot is None:
                    shot = self.shot(sc)
                cid = self.character(e)
                self.speech(shot, cid, e, last_speaker)
                last_speaker = cid
        if sc is not None:
            sc.trailing += self.pending
            self.pending = []

    def speech(self, shot: _Shot, cid: str, d: F.Dialogue, before: str | None) -> None:
        ext = [x for x in d.extensions if x.upper().replace("’", "'") not in _DROP]
        first = d.parts[0].paren if d.parts else None
        off = any(_off_screen(x) for x in (*ext, first) if x)
        if not off and cid not in shot.cast:
            shot.cast.append(cid)
        for part in d.parts or (F.Part(None, ""),):
            words = [*ext, *([part.paren] if part.paren else []), *(["sung"] if part.sung else [])]
            text = _join(F.plain(part.text))
            if text:
                shot.lines.append((cid, ", ".join(words), text))
        shot.comments += [f"note: {n}" for n in d.notes]
        if d.dual and before is not None:
            shot.notes.append(f"dual dialogue: {before} and {cid} speak at once")

    # -- the files -------------------------------------------------------------------------

    def files(self, title: str | None) -> dict[str, str]:
        play = self.play
        film_title = title or _join(F.plain(play.title_value("Title") or "")) or \
            _title_case(re.sub(r"[-_ ]+", " ", _base(play.file).rsplit(".", 1)[0])) or "Untitled"
        text = "".join(e.text for e in play.elements if hasattr(e, "text"))
        language = "zh" if _cjk(text) and _cjk_share(text) > 0.3 else "en"
        out: dict[str, str] = {}
        parts = []
        for n, sc in enumerate(self.scenes, 1):
            rel = f"scenes/{n:02d}_{_file_word(sc.id)}.film"
            parts.append(rel)
            out[rel] = self.scene_file(sc)
        head = [f"// Imported from {_comment(_base(play.file))} by `filmc import`: a first "
                "breakdown, one shot",
                "// per action beat. The language is described in filmc's docs/language.md.",
                "", 'use "cast.film"', "", f"film {quote(film_title)} {{", "  aspect 16:9",
                "  size 1280x720", "  fps 24", f"  language {quote(language)}"]
        for key, value in play.title:
            if key.casefold() != "title":
                head.append(f"  note {quote(key + ': ' + _join(F.plain(value), '; '))}")
        head += [f"  part {quote(p)}" for p in parts]
        head.append("}")
        out["film.film"] = "\n".join(head) + "\n"
        cast = ["// Who and where: every character the screenplay gives a line, every place",
                "// its headings name. Give one a reference image with `ref \"refs/NAME.png\"`."]
        for c in self.characters.values():
            cast += ["", f"character {c.id} {quote(c.name)} {{"]
            if c.look:
                cast.append(f"  look {quote(c.look)}")
            cast.append("}")
        for lid, (name, look) in self.locations.items():
            cast += ["", f"location {lid} {quote(name)} {{", f"  look {quote(look)}", "}"]
        out["cast.film"] = "\n".join(cast) + "\n"
        return out

    def scene_file(self, sc: _Scene) -> str:
        lines = [f"// {_comment(c)}" if c else "//" for c in sc.comments]
        if lines:
            lines.append("")
        header = " ".join(x for x in ("scene", sc.id, quote(sc.title), sc.slug) if x)
        lines.append(header + " {")
        lines += [f"  note {quote(n)}" for n in sc.notes]
        for shot in sc.shots:
            lines.append("")
            lines += [f"  // {_comment(c)}" if c else "  //" for c in shot.comments]
            lines.append(f"  shot {shot.id} {_duration(shot)} {{")
            lines.append("    cast" + (" " + ", ".join(shot.cast) if shot.cast else ""))
            if shot.action:
                lines.append(f"    action {quote(shot.action)}")
            lines += [f"    note {quote(n)}" for n in shot.notes]
            for who, paren, text in shot.lines:
                lines.append(f"    {who}{f' ({_paren(paren)})' if paren else ''}: {quote(text)}")
            lines.append("  }")
        if sc.trailing:
            lines.append("")
            lines += [f"  // {_comment(c)}" if c else "  //" for c in sc.trailing]
        lines.append("}")
        return "\n".join(lines) + "\n"


def breakdown(play: F.Screenplay, title: str | None = None) -> dict[str, str]:
    """The `.film` files of a first breakdown of `play`, by path in the new project, each
    as `filmc fmt` writes it."""
    b = _Breakdown(play)
    b.run()
    out = {}
    for rel, text in b.files(title).items():
        diags = Diagnostics()
        formatted = format_text(text, rel, diags)
        if formatted is None or diags.errors:  # a bug here, not the user's: say what broke
            raise ValueError(f"the breakdown wrote a `{rel}` that does not parse: "
                             + "; ".join(f"{d.message} at line {d.span.line if d.span else '?'}"
                                         for d in diags.errors))
        out[rel] = formatted
    return out


def _duration(shot: _Shot) -> str:
    words = _words(shot.action)
    seconds = words / ACTION_WORDS_PER_SECOND + _cjk_count(shot.action) / CJK_ACTION_PER_SECOND
    said = sum(speaking_time(text) + 0.5 for _w, _p, text in shot.lines)
    seconds = max(MIN_SHOT, seconds, said)
    half = math.ceil(seconds * 2) / 2
    return f"{half:g}s"


def _words(text: str) -> int:
    rest = _CJK_RE.sub(" ", text)
    return len([w for w in rest.split() if any(c.isalnum() for c in w)])


_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def _cjk_count(text: str) -> int:
    return len(_CJK_RE.findall(text))


def _cjk_share(text: str) -> float:
    letters = sum(1 for c in text if c.isalpha())
    return _cjk_count(text) / letters if letters else 0.0


def _time(text: str) -> str | None:
    """A heading's time of day as the language writes it, or None when it knows none."""
    t = text.strip().strip(".")
    if t in CHINESE_TIMES:
        return t
    if t in _CHINESE_TIME_WORDS:
        return _CHINESE_TIME_WORDS[t]
    up = t.upper()
    up = _TIME_WORDS.get(up, up)
    word = re.sub(r"[\s-]+", "_", up)
    return word if word in TIMES_OF_DAY else None


def _ident(text: str, prefix: str) -> str:
    """A `.film` id from free text: letters, digits and `_` (any script), never starting
    with a digit: `HAN'S TRUCK` → `HANS_TRUCK`, `1A` → `1A` (with `prefix` when it must)."""
    text = unicodedata.normalize("NFC", text).replace("'", "").replace("’", "")
    ident = re.sub(r"\W+", "_", text).strip("_")
    if not ident or ident[0].isdigit():
        ident = prefix + ident if prefix else ident
    return ident or "X"


def _unique(ident: str, taken: set[str]) -> str:
    out, n = ident, 2
    while out in taken:
        out, n = f"{ident}_{n}", n + 1
    taken.add(out)
    return out


def _sentence(text: str, at: int) -> str:
    """The sentence of `text` around position `at`."""
    stops = [m.end() for m in re.finditer(r"[.!?。！？](\s|$)", text)]
    start = max([s for s in stops if s <= at], default=0)
    end = min([s for s in stops if s > at], default=len(text))
    return _join(text[start:end]).strip()


def _join(text: str, sep: str = " ") -> str:
    """Lines as one line (a `.film` string is one line); Chinese and Japanese lines join
    without a space."""
    out = ""
    for line in (x.strip() for x in text.split("\n")):
        if not line:
            continue
        if out and not (sep == " " and _wide(out[-1]) and _wide(line[0])):
            out += sep
        out += line
    return out


def _wide(c: str) -> bool:
    return unicodedata.east_asian_width(c) in ("W", "F")



def _title_case(text: str) -> str:
    """`HAN'S TRUCK` → `Han's Truck` (str.title() would write `Han'S`)."""
    return " ".join(w[:1].upper() + w[1:].lower() for w in text.split())


def _paren(text: str) -> str:
    """A parenthetical as the grammar takes it: no parentheses inside."""
    return text.translate(str.maketrans("()（）", "[][]"))


def _comment(text: str) -> str:
    return text.replace("\r", " ").rstrip()


def _base(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]


def _file_word(ident: str) -> str:
    return ident if re.fullmatch(r"[A-Za-z0-9_]+", ident) else "scene"


