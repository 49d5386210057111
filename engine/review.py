"""The review page: every shot with its candidates side by side, as data and as HTML.

    cards = contact_sheet(program, store)     # one Card a shot, in film order
    media(program, store)                     # [("keyframes/chen.openai-2.png", digest)…]
    write_static(program, store, build/<film>/review)
    render(program, cards, served=True, filter="unpicked", page=2, link=...)

`filmc review` (filmc/review_server.py) serves the page and a click there picks
(through engine/picks.py, as `filmc pick` does); a whole-film build writes the
same page as static files under `build/<film>/review/`, where a click shows the
`filmc pick` command instead, since a file in a browser cannot write the lock.
Both come from one template, `review.html.j2` beside this module.

A page holds at most `PER_PAGE` shots: a 3,000-shot film is thirty pages of
lazily loaded images, never one page of 15,000 of them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import marshal
import operator
import os
import re
import shlex
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import jinja2

from ..compiler.lock import CLIP, KEYFRAME, PICKED, STALE, UNPICKED, Choice
from ..compiler.plan import estimate, money
from ..lang.steps import StepId
from .layout import _place, clip_file, keyframe_file, write_atomic
from .store import Store

PER_PAGE = 100
FILTERS = ("all", "unpicked", "stale")
TEMPLATE = Path(__file__).with_name("review.html.j2")
_DEFAULT_EXT = {KEYFRAME: ".png", CLIP: ".mp4"}
_PLAIN = re.compile(r"[A-Za-z0-9_./-]+")  # a path that a URL holds as it is


@attrs.frozen
class Candidate:
    """One keyframe candidate or clip take of a shot, as the page shows it."""

    name: str  # openai-2, retouch-1, take2
    kind: str  # keyframe | clip
    origin: str  # the backend that makes it, or `imported`, `retouched from openai-2`
    seed: int | None
    digest: str | None  # its output in the store; None: not built (or not in this store)
    ext: str  # .png, .mp4…
    file: str  # where a build lays it out, under build/<film>/
    picked: bool  # film.lock picks it, and the pick holds
    used: bool  # what the film uses: the pick, else the first
    waits: bool  # not made until the shot's keyframe is picked

    @property
    def built(self) -> bool:
        return self.digest is not None


@attrs.frozen
class Card:
    """One shot, with everything the review page shows of it."""

    scene: str
    scene_title: str
    place: str  # EXT. PIER - DAWN
    shot: str
    number: int
    duration: Fraction
    camera: tuple[str, ...]
    light: tuple[str, ...]
    cast: tuple[tuple[str, str | None, str], ...]  # (character, outfit, framing)
    action: str
    lines: tuple[tuple[str, str], ...]  # (speaker, text)
    backends: tuple[tuple[str, str], ...]  # (kind, backend): keyframe and clip
    cost: str  # the estimated price of all its steps, or "" when nothing is priced
    keyframe: Choice
    clip: Choice
    keyframes: tuple[Candidate, ...]
    clips: tuple[Candidate, ...]

    @property
    def statuses(self) -> frozenset[str]:
        return frozenset({self.keyframe.status, self.clip.status})

    @property
    def poster(self) -> Candidate | None:
        """The keyframe the clips start from, when the shot has one and it is built."""
        return next((c for c in self.keyframes if c.used and c.built), None)

    @property
    def seconds(self) -> str:
        return f"{float(self.duration):g} s"

    def matches(self, filter: str) -> bool:
        if filter == "unpicked":
            return UNPICKED in self.statuses
        if filter == "stale":
            return STALE in self.statuses
        return True


# --- the data -------------------------------------------------------------------------------


def contact_sheet(program: Any, store: Store | None,
                  made: Mapping[str, tuple[str, str]] | None = None) -> list[Card]:
    """Every shot of the film, in order, with its candidates and takes and whether each is
    in the store.  `made`: step key → (digest, extension) of what a build just made or
    reused, which the store is not asked for again."""
    return sheet_of(looked_up(program, store, made))


@attrs.frozen
class LookedUp:
    """What the contact sheet needs of the store, read (`looked_up`): the rest of the sheet
    (`sheet_of`) reads files alone, and may be made in another thread than the store's."""

    program: Any
    store: Store | None
    shots: list[tuple[Any, Any]]  # (ShotInfo, ShotPicks), in film order
    steps: dict[tuple[str, str, str], Any]  # (shot, kind, candidate) → its step
    outputs: dict[str, tuple[str, str]]  # step key → (digest, extension)


def looked_up(program: Any, store: Store | None,
              made: Mapping[str, tuple[str, str]] | None = None) -> LookedUp:
    """The candidates of every shot, and what the store holds of them (`made`: what a build
    just made or reused, which the store is not asked for again)."""
    nodes = program.graph._node
    shots = [(info, program.picks[(info.scene, info.id)]) for info in program.shots]
    steps: dict[tuple[str, str, str], Any] = {}
    for info, picks in shots:
        for choice in (picks.keyframe, picks.clip):
            for name in choice.candidates:
                sid = StepId(choice.kind, info.scene, info.id, candidate=name)
                steps[(info.id, choice.kind, name)] = nodes[str(sid)]["step"]
    known = made or {}
    outputs = dict(known)
    outputs.update(_outputs(store, [s for s in steps.values()
                                    if s.backend is not None and s.key not in known]))
    return LookedUp(program, store, shots, steps, outputs)


def sheet_of(found: LookedUp) -> list[Card]:
    """The contact sheet of what `looked_up` found (no query of the store's index)."""
    program, store, shots, steps, outputs = (found.program, found.store, found.shots,
                                             found.steps, found.outputs)
    per_shot: dict[tuple[str, str], list[Any]] = {}
    for data in program.graph._node.values():
        if data.get("shot") is not None:
            per_shot.setdefault((data["scene"], data["shot"]), []).append(data["step"])
    cards = []
    for info, picks in shots:
        kinds = dict(info.backends)
        cards.append(Card(
            info.scene, info.scene_title, info.place, info.id, info.number, info.duration,
            info.camera, info.light, info.cast, info.action, info.lines,
            tuple((k, kinds[k]) for k in (KEYFRAME, CLIP) if k in kinds),
            _cost(per_shot.get((info.scene, info.id), ()), program),
            picks.keyframe, picks.clip,
            *(tuple(_candidate(info, choice, name, steps[(info.id, choice.kind, name)], store,
                               outputs) for name in choice.candidates)
              for choice in (picks.keyframe, picks.clip))))
    return cards


def _outputs(store: Store | None, steps: list[Any]) -> dict[str, tuple[str, str]]:
    """key → (digest, ext) of each step's output that the store holds."""
    if store is None or not steps:
        return {}
    found: dict[str, tuple[str, str]] = {}
    for key, action in store.get_actions(s.key for s in steps).items():
        if action.outputs:
            out = action.outputs[0]
            found[key] = (out["digest"], out.get("ext") or "")
    return found


def _candidate(info: Any, choice: Choice, name: str, step: Any, store: Store | None,
               outputs: Mapping[str, tuple[str, str]]) -> Candidate:
    kind = choice.kind
    if step.backend is None:  # a take the user added: it is its bytes
        take = step.params.get("take", {})
        digest, ext, origin = step.pin, take.get("ext") or "", take.get("origin", "imported")
    else:
        digest, ext = outputs.get(step.key, (step.pin, ""))
        origin = step.backend
    ext = ext or _DEFAULT_EXT[kind]
    if digest is not None and (store is None or not os.path.isfile(store.objects.where(digest))):
        digest = None  # recorded, but its object is gone (removed by hand, or another store)
    where = keyframe_file if kind == KEYFRAME else clip_file
    return Candidate(name, kind, origin, step.fields.seed, digest, ext, where(info.id, name, ext),
                     choice.status == PICKED and name == choice.used, name == choice.used,
                     step.waits is not None)


def _cost(steps: Iterable[Any], program: Any) -> str:
    total, priced = 0.0, False
    for step in steps:
        if step.backend is None:
            continue
        price = estimate(step, program.backends)
        if price is not None:
            total, priced = total + price, True
    return money(total, program.currency) if priced else ""


def media(program: Any, store: Store | None,
          cards: list[Card] | None = None) -> list[tuple[str, str]]:
    """(path under build/<film>/, digest) of every candidate and take the store holds: the
    page links them all, picked or not, made by this build or an earlier one."""
    if cards is None:
        cards = contact_sheet(program, store)
    return [(c.file, c.digest) for card in cards for c in (*card.keyframes, *card.clips)
            if c.digest is not None]


# --- the page ---------------------------------------------------------------------------------


@attrs.frozen
class Page:
    """One page of one filter: its shots grouped by scene, and the way to the others."""

    filter: str
    number: int
    pages: int
    groups: tuple[tuple[Card, tuple[Card, ...]], ...]  # (first card of a scene, its cards)
    counts: Mapping[str, int]  # filter → shots
    index: tuple[tuple[str, str, int, int], ...]  # (scene, title, page, shots in it)


def paginate(cards: list[Card], filter: str, per_page: int | None = None,
             found: Mapping[str, int] | None = None) -> list[Page]:
    """The pages of the cards that `filter` keeps (at least one, maybe empty), `per_page`
    shots a page (`PER_PAGE`); `found`: `counts(cards)`, when the caller has them."""
    per_page = per_page or PER_PAGE
    kept = [c for c in cards if c.matches(filter)]
    total = max(1, -(-len(kept) // per_page))
    index: dict[str, list[Any]] = {}
    for i, c in enumerate(kept):
        entry = index.setdefault(c.scene, [c.scene, c.scene_title, i // per_page + 1, 0])
        entry[3] += 1
    scenes = tuple((s, t, p, n) for s, t, p, n in index.values())
    found = counts(cards) if found is None else found
    pages = []
    for number in range(1, total + 1):
        groups: list[tuple[Card, list[Card]]] = []
        for c in kept[(number - 1) * per_page:number * per_page]:
            if not groups or groups[-1][0].scene != c.scene:
                groups.append((c, []))
            groups[-1][1].append(c)
        pages.append(Page(filter, number, total,
                          tuple((first, tuple(cs)) for first, cs in groups), found, scenes))
    return pages


def counts(cards: list[Card]) -> dict[str, int]:
    return {f: sum(1 for c in cards if c.matches(f)) for f in FILTERS}


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _lang(text: str) -> str:
    """A `lang` for text written in Chinese (or Japanese, Korean), so the browser picks a
    font that draws it; "" otherwise."""
    if not _CJK.search(text):
        return ""
    if re.search(r"[\u3040-\u30ff]", text):
        return "ja"
    if re.search(r"[\uac00-\ud7af]", text):
        return "ko"
    return "zh"


_template: jinja2.Template | None = None


def template() -> jinja2.Template:
    """The page's template, compiled once a process."""
    global _template
    if _template is None:
        env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                 undefined=jinja2.StrictUndefined)
        env.filters["lang"] = _lang
        _template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return _template


def pick_command(program: Any) -> str:
    """How `filmc pick` names this film, run in the project folder."""
    main = Path(program.lock).with_suffix(".film")
    try:
        name = str(main.relative_to(program.root))
    except ValueError:
        name = str(main)
    return f"filmc pick {shlex.quote(name)}"


def font_file() -> Path:
    """The face the local backend draws its panels with (Latin and CJK, OFL): the page's
    fallback font, so that Chinese dialogue displays on a machine with no CJK font."""
    return Path(str(importlib.resources.files("filmc.backends.local")
                    / "fonts" / "FilmcPanelSans-Regular.otf"))


def cards_html(program: Any, cards: Iterable[Card], *, served: bool,
               media_url: Callable[[Candidate], str]) -> dict[str, str]:
    """Each shot's card, rendered once: shot → HTML (the server sends a card back after a
    pick, and the page swaps it in)."""
    module = template().make_module(_context(program, served, media_url))
    shot = module.shot  # type: ignore[attr-defined]
    return {c.shot: shot(c) for c in cards}


def render(program: Any, page: Page, *, served: bool, link: Callable[[str, int], str],
           media_url: Callable[[Candidate], str], font_url: str | None = None,
           cards: Mapping[str, str] | None = None) -> str:
    """The HTML of `page`, with `cards` (from `cards_html`) when they are rendered already."""
    if cards is None:
        cards = cards_html(program, (c for _f, cs in page.groups for c in cs), served=served,
                           media_url=media_url)
    return template().render(_context(program, served, media_url), page=page, link=link,
                             font_url=font_url, cards_html=cards).lstrip()


def _context(program: Any, served: bool, media_url: Callable[[Candidate], str]) -> dict:
    return {"title": program.title, "served": served, "media_url": media_url,
            "command": pick_command(program), "filters": FILTERS, "KEYFRAME": KEYFRAME,
            "CLIP": CLIP, "page": None}


def static_link(filter: str, page: int) -> str:
    """The file of page `page` of `filter` in build/<film>/review/."""
    if filter == "all":
        return "index.html" if page == 1 else f"page-{page}.html"
    return f"{filter}.html" if page == 1 else f"{filter}-{page}.html"


def write_static(program: Any, store: Store | None, folder: Path,
                 cards: list[Card] | None = None) -> list[Path]:
    """Write the page as files into `folder` (build/<film>/review/): index.html, page-2.html…,
    and the same for the unpicked and stale shots; the media links point at the build's
    own keyframes/ and clips/.  Pages left from a longer film are removed.

    Only the pages whose content changed are rendered and written: each page's digest
    (of its cards' data, its place among the pages and the code that renders it) is kept
    beside the pages in `.pages.json`, with the size and mtime of the file written, and
    a page whose digest and file are as recorded is left alone.  Rendering every card
    of a 3,000-shot film is most of a second; a one-shot edit renders the pages that
    show that shot (bench/bench_pages.py).  Returns the pages written."""
    if cards is None:
        cards = contact_sheet(program, store)

    def media_url(c: Candidate) -> str:
        return "../" + (c.file if _PLAIN.fullmatch(c.file) else urllib.parse.quote(c.file))

    font = font_file()
    font_url: str | None = None
    if font.is_file():  # beside the pages, with its licence
        font_url = font.name
        for src, dest in ((font, folder / font.name),
                          (font.with_name("OFL.txt"), folder / "FilmcPanelSans-OFL.txt")):
            if src.is_file() and not (dest.is_file()
                                      and dest.stat().st_size == src.stat().st_size):
                _place(src, dest)
    known = _read_digests(folder)
    facts = {c.shot: _digest(_facts(c)) for c in cards}
    head = _digest((_code_digest(), program.title, pick_command(program), font_url))
    pages: dict[str, tuple[Page, str]] = {}  # file → (page, digest)
    found = counts(cards)
    for f in FILTERS:
        for page in paginate(cards, f, found=found):
            shown = [facts[c.shot] for _first, cs in page.groups for c in cs]
            where = (page.filter, page.number, page.pages, tuple(sorted(page.counts.items())),
                     page.index)
            pages[static_link(f, page.number)] = (page, _digest((head, where, *shown)))
    todo = [name for name, (_page, digest) in pages.items()
            if known.get(name, [None])[0] != digest or _stat(folder / name) != known[name][1:]]
    html = cards_html(program, {c.shot: c for name in todo
                                for _f, cs in pages[name][0].groups for c in cs}.values(),
                      served=False, media_url=media_url)
    written: list[Path] = []
    for name in todo:
        path = folder / name
        write_atomic(path, render(program, pages[name][0], served=False, link=static_link,
                                  media_url=media_url, font_url=font_url, cards=html))
        written.append(path)
    for old in folder.glob("*.html"):
        if old.name not in pages:
            old.unlink()
    now = {name: [digest, *(_stat(folder / name) if folder / name in written
                            else known[name][1:])]
           for name, (_page, digest) in pages.items()}
    if now != known:
        write_atomic(folder / DIGESTS, json.dumps(now, indent=0, sort_keys=True) + "\n")
    return written


DIGESTS = ".pages.json"  # beside the pages: file → [digest, size, mtime_ns] of each


def _read_digests(folder: Path) -> dict[str, list]:
    """What `write_static` last wrote in `folder`; {} when unreadable (all pages are written)."""
    try:
        found = json.loads((folder / DIGESTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, list) and len(v) == 3}


def _stat(path: Path) -> list[int]:
    """A written page's size and mtime: a page edited or removed by hand is written again."""
    try:
        st = path.stat()
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def _digest(facts: Any) -> str:
    """The sha256 of plain data (str, int, float, bool, None, tuples of them), by value:
    marshal's format 2 writes no references, so equal values give equal bytes whichever
    objects hold them (a pickle would not)."""
    return hashlib.sha256(marshal.dumps(facts, 2)).hexdigest()


@functools.cache
def _code_digest() -> str:
    """The template's and this module's text: a change to how a page is drawn redraws all."""
    return _digest((TEMPLATE.read_text(encoding="utf-8"), Path(__file__).read_text("utf-8")))


_PRIMITIVE = frozenset({str, int, float, bool, type(None)})
_GETTERS: dict[type, Callable[[Any], tuple]] = {}


def _facts(value: Any) -> Any:
    """A card's data as plain tuples, digested by value (attrs' repr of the cards took
    longer than the rest of an unchanged build's page).  Every field of every attrs
    class, so that a field added to `Card` is in the digest without a word here."""
    kind = type(value)
    if kind in _PRIMITIVE:
        return value
    if kind is tuple:
        for v in value:
            if type(v) not in _PRIMITIVE:
                return tuple([v if type(v) in _PRIMITIVE else _facts(v) for v in value])
        return value
    if kind is Fraction:
        return (value.numerator, value.denominator)
    get = _GETTERS.get(kind)
    if get is None:
        if not attrs.has(kind):  # a frozenset, a dict: in an order of its own
            return repr(sorted(map(repr, value))) if isinstance(value, (set, frozenset)) \
                else repr(value)
        names = [f.name for f in attrs.fields(kind)]
        get = _GETTERS[kind] = _getter(names)
    return (kind.__name__, *[v if type(v) in _PRIMITIVE else _facts(v) for v in get(value)])


def _getter(names: list[str]) -> Callable[[Any], tuple]:
    """Every field of a record at once (one C call); a tuple even of one field."""
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda v: (one(v),)
    return operator.attrgetter(*names)
