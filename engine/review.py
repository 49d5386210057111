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

import importlib.resources
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


def contact_sheet(program: Any, store: Store | None) -> list[Card]:
    """Every shot of the film, in order, with its candidates and takes and whether each is
    in the store."""
    nodes = program.graph._node
    per_shot: dict[tuple[str, str], list[Any]] = {}
    for data in nodes.values():
        if data.get("shot") is not None:
            per_shot.setdefault((data["scene"], data["shot"]), []).append(data["step"])
    shots = [(info, program.picks[(info.scene, info.id)]) for info in program.shots]
    steps: dict[tuple[str, str, str], Any] = {}
    for info, picks in shots:
        for choice in (picks.keyframe, picks.clip):
            for name in choice.candidates:
                sid = StepId(choice.kind, info.scene, info.id, candidate=name)
                steps[(info.id, choice.kind, name)] = nodes[str(sid)]["step"]
    outputs = _outputs(store, [s for s in steps.values() if s.backend is not None])
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
    if digest is not None and (store is None or not os.path.isfile(store.objects.path(digest))):
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


def paginate(cards: list[Card], filter: str, per_page: int = PER_PAGE) -> list[Page]:
    """The pages of the cards that `filter` keeps (at least one, maybe empty)."""
    kept = [c for c in cards if c.matches(filter)]
    total = max(1, -(-len(kept) // per_page))
    index: dict[str, list[Any]] = {}
    for i, c in enumerate(kept):
        entry = index.setdefault(c.scene, [c.scene, c.scene_title, i // per_page + 1, 0])
        entry[3] += 1
    scenes = tuple((s, t, p, n) for s, t, p, n in index.values())
    found = counts(cards)
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
    own keyframes/ and clips/.  Pages left from a longer film are removed."""
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
    html = cards_html(program, cards, served=False, media_url=media_url)
    written: list[Path] = []
    for f in FILTERS:
        for page in paginate(cards, f):
            path = folder / static_link(f, page.number)
            write_atomic(path, render(program, page, served=False, link=static_link,
                                      media_url=media_url, font_url=font_url, cards=html))
            written.append(path)
    for old in folder.glob("*.html"):
        if old not in written:
            old.unlink()
    return written
