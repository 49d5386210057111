"""`film.lock`: which candidate keyframe and which clip take each shot uses.

The lock sits beside the film's main file (`film.film` → `film.lock`), is text
meant to be committed, and is a compiler input like the sources and
filmc.toml: a pick decides which keyframe a shot's clips are made from, so
changing one re-keys what is downstream of it, and nothing else.

    version = 1

    [chen_watches]
    keyframe = { pick = "openai-2", key = "3f9a…", digest = "c0de…" }
    clip = { pick = "take1", key = "77b1…", digest = "9e4f…" }
    takes = [
      { name = "retouch-1", kind = "keyframe", from = "openai-2", digest = "…", file = "chen.png" },
    ]

One table a shot, named by its id (shot ids are unique in a film, and a shot
moved to another scene keeps its picks), sorted.  A pick names its candidate, the step
key it was made under and the sha256 of its output: the build uses exactly
that output (from the store, by digest) and never makes something else in its
place.  A pick whose candidate no longer exists, or whose key is not the
candidate's key any more (its prompt, seed, references or backend changed),
is *stale*.  `takes` are the user's own images and clips (`filmc take add`),
kept in the store by digest: `from` says which candidate one was retouched
from.

`read_lock` parses (every problem a diagnostic at its line); `render_lock` is
the one writer of the format (engine/picks.py calls it); `resolve` decides,
for one shot, which candidate is used and whether its clips must wait.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from ..lang.ast import Span
from ..lang.diagnostics import Diagnostics
from ..lang.loader import display_path
from ..lang.tree import current as current_tree
from .tomlpos import error_message, error_span, line_col, scan_positions

VERSION = 1
KEYFRAME, CLIP = "keyframe", "clip"
IMPORTED, RETOUCHED = "import", "retouch"  # the name prefixes of a user's takes

_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*\Z")
_CONFLICT = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.M)


LOCK_NAME = "film.lock"  # what messages call it when there is no file to name


def lock_path(main: Path) -> Path:
    """The lock of the film whose main file is `main`."""
    return main.with_suffix(".lock")


@attrs.frozen
class Pick:
    name: str  # the candidate (`openai-2`, `retouch-1`) or take (`take2`)
    key: str  # the step key it was made under
    digest: str  # the sha256 of its output


@attrs.frozen
class Take:
    """An image or clip the user added (`filmc take add`)."""

    name: str  # import-1, retouch-1
    kind: str  # keyframe | clip
    digest: str
    file: str  # the file's name when it was added, for people
    source: str | None = None  # the candidate it was retouched from

    @property
    def origin(self) -> str:
        return f"retouched from {self.source}" if self.source else "imported"

    @property
    def ext(self) -> str:
        return Path(self.file).suffix.lower()


@attrs.frozen
class ShotLock:
    keyframe: Pick | None = None
    clip: Pick | None = None
    takes: tuple[Take, ...] = ()

    def pick(self, kind: str) -> Pick | None:
        return self.keyframe if kind == KEYFRAME else self.clip

    def takes_of(self, kind: str) -> tuple[Take, ...]:
        return tuple(t for t in self.takes if t.kind == kind)

    @property
    def empty(self) -> bool:
        return self.keyframe is None and self.clip is None and not self.takes


@attrs.frozen(eq=False)
class Lock:
    path: Path | None  # None: the film has no lock yet
    shots: Mapping[str, ShotLock] = attrs.field(factory=dict)  # shot id → its entry
    spans: Mapping[str, Span] = attrs.field(factory=dict)  # shot id → its table's header

    def shot(self, shot: str) -> ShotLock:
        return self.shots.get(shot, _NO_PICKS)


_NO_PICKS = ShotLock()


# --- reading ------------------------------------------------------------------------------


def read_lock(path: Path, diags: Diagnostics, sources: object | None = None) -> Lock:
    """The lock at `path` (an empty one when there is none); each problem is an error at
    its line, and a malformed entry is left out."""
    tree = current_tree()
    if not tree.is_file(path):
        return Lock(None)
    file = display_path(path)
    try:
        text = tree.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        diags.error("F0801", f"cannot read `{file}`: {e}", Span(file, 1, 1, 1, 1),
                    help="restore it from git (`git checkout -- " + path.name + "`)")
        return Lock(path)
    if sources is not None:
        sources.add(file, text)  # type: ignore[attr-defined]
    conflict = _CONFLICT.search(text)
    if conflict:
        line, col, end = line_col(text, conflict.start(), conflict.end())
        diags.error("F0801", f"`{file}` has an unresolved merge conflict",
                    Span(file, line, col, line, end), "conflict marker",
                    help="keep one side of each conflict (each shot's table is independent), "
                         "then `filmc lock --check`; or re-pick with `filmc pick`")
        return Lock(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        diags.error("F0801", error_message(str(e)), error_span(file, text, str(e)),
                    "invalid TOML here", help="fix it, or restore it from git")
        return Lock(path)
    pos = scan_positions(text)

    def span(*keys: str) -> Span:
        for n in range(len(keys), 0, -1):
            found = pos.get(keys[:n])
            if found is not None:
                line, col, end = line_col(text, *found)
                return Span(file, line, col, line, end)
        return Span(file, 1, 1, 1, 2)

    version = data.pop("version", VERSION)
    if version != VERSION:
        diags.error("F0802", f"`{file}` is version {version!r}; this filmc reads version "
                    f"{VERSION}", span("version"),
                    help="a newer filmc wrote it: upgrade filmc" if isinstance(version, int)
                    and version > VERSION else "write `version = 1`")
        return Lock(path)
    shots: dict[str, ShotLock] = {}
    spans: dict[str, Span] = {}
    for name, entry in data.items():
        where = span(name)
        if not isinstance(entry, dict):
            diags.error("F0802", f"`{name}` is not a shot's table", where,
                        help="each table is one shot: `[shot_id]`")
            continue
        bad = _Bad(diags, span, name)
        picks = {k: _pick(entry.get(k), bad, k) for k in (KEYFRAME, CLIP)}
        takes = _takes(entry.get("takes", []), bad)
        for key in entry.keys() - {KEYFRAME, CLIP, "takes"}:
            bad(f"unknown entry `{key}`", key, "a shot's table holds `keyframe`, `clip` and "
                "`takes`")
        shots[name] = ShotLock(picks[KEYFRAME], picks[CLIP], takes)
        spans[name] = where
    return Lock(path, shots, spans)


class _Bad:
    def __init__(self, diags: Diagnostics, span, shot: str) -> None:
        self.diags, self.span, self.shot = diags, span, shot

    def __call__(self, message: str, key: str, help: str) -> None:
        self.diags.error("F0802", f"in `{self.shot}`: {message}", self.span(self.shot, key),
                         help=help + "; or re-pick with `filmc pick`")


def _pick(value: object, bad: _Bad, kind: str) -> Pick | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        bad(f"`{kind}` is not a pick", kind, "write `{ pick = ..., key = ..., digest = ... }`")
        return None
    name, key, digest = value.get("pick"), value.get("key"), value.get("digest")
    if not (isinstance(name, str) and _NAME.match(name)):
        bad(f"`{kind}` has no valid `pick`", kind, "`pick` names a candidate, like `openai-2`")
        return None
    if not (isinstance(key, str) and _DIGEST.match(key)
            and isinstance(digest, str) and _DIGEST.match(digest)):
        bad(f"`{kind}` needs a `key` and a `digest` of 64 hex digits", kind,
            "filmc writes them")
        return None
    return Pick(name, key, digest)


def _takes(value: object, bad: _Bad) -> tuple[Take, ...]:
    if not isinstance(value, list):
        bad("`takes` is not a list", "takes", "write `takes = [ { ... }, ... ]`")
        return ()
    out: list[Take] = []
    for t in value:
        if not isinstance(t, dict):
            bad("a take is not a table", "takes", "each take is `{ name = ..., kind = ... }`")
            continue
        name, kind, digest, file, source = (t.get(k) for k in ("name", "kind", "digest",
                                                                  "file", "from"))
        if not (isinstance(name, str) and _NAME.match(name) and kind in (KEYFRAME, CLIP)
                and isinstance(digest, str) and _DIGEST.match(digest)
                and isinstance(file, str) and (source is None or isinstance(source, str))):
            bad(f"take `{name}` is malformed", "takes",
                "a take has `name`, `kind` (keyframe or clip), `digest`, `file` and maybe `from`")
            continue
        if any(o.name == name and o.kind == kind for o in out):
            bad(f"take `{name}` is listed twice", "takes", "remove one of them")
            continue
        out.append(Take(name, kind, digest, file, source))
    return tuple(out)


# --- writing ------------------------------------------------------------------------------

_HEADER = """\
# The picks of {title}: which candidate keyframe and which clip take each
# shot uses, and the images and clips added with `filmc take add`.
# Written by `filmc pick`, `filmc review` and `filmc take add`; commit it.
version = {version}
"""


def render_lock(title: str, shots: Mapping[str, ShotLock]) -> str:
    """The lock's text: one table a shot, sorted, entries in a fixed order."""
    out = [_HEADER.format(title=_q(title), version=VERSION)]
    for name in sorted(shots):
        entry = shots[name]
        if entry.empty:
            continue
        out.append(f"\n[{_key(name)}]\n")
        for kind in (KEYFRAME, CLIP):
            p = entry.pick(kind)
            if p is not None:
                out.append(f"{kind} = {{ pick = {_q(p.name)}, key = {_q(p.key)}, "
                           f"digest = {_q(p.digest)} }}\n")
        if entry.takes:
            out.append("takes = [\n")
            for t in sorted(entry.takes, key=lambda t: (t.kind != KEYFRAME, _order(t.name))):
                source = f", from = {_q(t.source)}" if t.source else ""
                out.append(f"  {{ name = {_q(t.name)}, kind = {_q(t.kind)}{source}, "
                           f"digest = {_q(t.digest)}, file = {_q(t.file)} }},\n")
            out.append("]\n")
    return "".join(out)


def _key(name: str) -> str:
    """A TOML key: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _q(name)


def _order(name: str) -> tuple[str, int]:
    m = re.match(r"(.*?)(\d+)\Z", name)
    return (m[1], int(m[2])) if m else (name, 0)


def _q(text: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


# --- resolving one shot ---------------------------------------------------------------------

# What a shot's pick of one kind (its keyframe, its clip) comes to.
PICKED = "picked"  # the lock picks a candidate that exists under the key it was picked at
SINGLE = "single"  # one candidate only: nothing to pick
UNPICKED = "unpicked"  # several candidates, no pick yet
STALE = "stale"  # the lock's pick no longer exists, or was made under another key
CONTINUES = "continues"  # `first_frame previous`: no keyframe of its own
PICK_STATUSES = (PICKED, SINGLE, UNPICKED, STALE)


@attrs.frozen
class Choice:
    """Which candidate of one kind a shot uses, and why."""

    kind: str  # keyframe | clip
    status: str  # PICKED, SINGLE, UNPICKED, STALE, CONTINUES
    used: str | None  # the candidate used: the pick, else the first
    candidates: tuple[str, ...]  # every candidate's name, in order
    pick: Pick | None = None  # the lock's entry (a stale one too)
    why: str = ""  # STALE: what happened to the pick
    waits: bool = False  # the steps that use it wait for a pick

    @property
    def pinned(self) -> bool:
        return self.status == PICKED


def resolve(kind: str, candidates: Mapping[str, str], user: Iterable[str],
            pick: Pick | None, paid: bool) -> Choice:
    """The choice for one kind of one shot.  `candidates`: name → step key, generated and
    the user's alike, in order; `user`: the names of the user's own takes (they are
    never stale: the file is what it is); `paid`: whether what uses the choice costs
    money, so that an unpicked or stale choice makes it wait instead of using the first."""
    names = tuple(candidates)
    first = names[0] if names else None
    if pick is not None:
        if pick.name not in candidates:
            # A renamed backend renames its candidates, not their keys: the pick follows.
            same = next((n for n, k in candidates.items() if k == pick.key), None)
            if same is not None:
                return Choice(kind, PICKED, same, names, attrs.evolve(pick, name=same))
            why = f"`{pick.name}` is no longer a candidate"
        elif pick.name not in user and candidates[pick.name] != pick.key:
            why = f"`{pick.name}` changed since it was picked"
        else:
            return Choice(kind, PICKED, pick.name, names, pick)
        return Choice(kind, STALE, first, names, pick, why, waits=paid)
    if len(names) <= 1:
        return Choice(kind, SINGLE, first, names)
    return Choice(kind, UNPICKED, first, names, waits=paid)


@attrs.frozen
class ShotPicks:
    """A shot's two choices, as the graph records them (`graph.graph["picks"]`)."""

    scene: str
    shot: str
    keyframe: Choice
    clip: Choice

    @property
    def address(self) -> str:
        """How the lock, `filmc pick` and messages name the shot: its id."""
        return self.shot

    @property
    def statuses(self) -> frozenset[str]:
        return frozenset({self.keyframe.status, self.clip.status})

    @property
    def waits(self) -> bool:
        return self.keyframe.waits or self.clip.waits


# --- what `check` and `plan` say ---------------------------------------------------------

SHOW_STALE = 20  # stale picks reported one by one; the rest in one line


def stale_warnings(lock: Lock, picks: Mapping[tuple[str, str], ShotPicks],
                   shot_spans: Mapping[tuple[str, str], Span], diags: Diagnostics,
                   offline: bool = False) -> None:
    """A warning for each stale pick (at its line of the lock) saying how to re-pick, and
    one for each shot the lock names that the film no longer has.  Offline, picks of
    real services' candidates cannot apply: nothing is said."""
    if lock.path is None or offline:
        return
    stale = [p for p in picks.values() if STALE in p.statuses]
    for p in stale[:SHOW_STALE]:
        for c in (p.keyframe, p.clip):
            if c.status != STALE:
                continue
            span = lock.spans.get(p.address) or shot_spans.get((p.scene, p.shot))
            diags.warning("W0801", f"the {c.kind} pick of `{p.address}` is stale: {c.why}",
                          span, "picked here", help=repick_help(p, c))
    if len(stale) > SHOW_STALE:
        diags.warning("W0801", f"{len(stale) - SHOW_STALE} more shots have stale picks", None,
                      help="`filmc lock` lists every shot's picks; `filmc review` to re-pick")
    known = {p.address for p in picks.values()}
    for name in sorted(set(lock.shots) - known):
        diags.warning("W0802", f"`{lock.path.name}` has picks for `{name}`, a shot the film no "
                      "longer has", lock.spans.get(name),
                      help="`filmc lock --prune` removes them (keep them while a shot is "
                           "only moved out for a while)")


def repick_help(p: ShotPicks, c: Choice) -> str:
    names = ", ".join(c.candidates[:6]) + (", …" if len(c.candidates) > 6 else "")
    flag = "--clip " if c.kind == CLIP else ""
    return (f"build it (`filmc build --until {c.kind} --select {p.address}`), look "
            f"(`filmc review`), then `filmc pick {p.address} {flag}CANDIDATE` "
            f"(candidates: {names})")
