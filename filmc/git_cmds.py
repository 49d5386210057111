"""`filmc diff` and `filmc log`: a film's history in git, read as changes to shots.

Both compile revisions in memory through the source-tree seam (lang/tree.py): no
checkout, the working tree untouched.  The comparison is compiler/diff.py; this module
reads git, the store (what is already paid for, and the pictures for `--html`) and
prints.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import FILE_HELP, USAGE_ERROR, fail, report

WORKTREE = "working tree"


def add_parsers(sub: Any) -> None:
    d = sub.add_parser(
        "diff", help="what changed between two versions of the film, shot by shot, and the "
                     "cost to rebuild",
        description="Compare two revisions of the film (default: HEAD against the working "
                    "tree; `A..B` too): shots added, removed, moved or renamed, each changed "
                    "field, the characters, outfits and locations changed with the shots they "
                    "reach, changed picks, and the steps to rebuild with their cost. Nothing "
                    "is checked out.")
    d.add_argument("revs", nargs="*", metavar="REV",
                   help="a commit, branch or tag; one: it against the working tree; two, or "
                        "A..B: A against B")
    d.add_argument("--file", "-f", type=Path, default=None, metavar="FILE",
                   help="the film's main .film file; " + FILE_HELP)
    d.add_argument("--offline", action="store_true",
                   help="compare the animatic's steps (what `build --offline` makes) instead "
                        "of the configured backends'")
    form = d.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the diff as JSON, for tools")
    form.add_argument("--stat", action="store_true", help="one line a changed shot")
    form.add_argument("--html", nargs="?", const="", default=None, metavar="DIR",
                      help="also write a page of each changed shot's old and new keyframe and "
                           "shot, side by side, from the store (default: build/<film>/diff/)")
    d.set_defaults(run=_diff)

    lg = sub.add_parser(
        "log", help="the commits that changed a shot, newest first, with what changed",
        description="The commits of the current branch that changed SHOT: its fields, the "
                    "looks of the characters, outfits and location it shows, its picks.")
    lg.add_argument("shot", metavar="SHOT", help="a shot id (or scene/shot)")
    lg.add_argument("--file", "-f", type=Path, default=None, metavar="FILE",
                    help="the film's main .film file; " + FILE_HELP)
    lg.add_argument("-n", "--max-count", type=int, default=50, metavar="N",
                    help="read at most the last N commits that touched the project (default 50)")
    lg.add_argument("--offline", action="store_true",
                    help="read the animatic's steps (for `--html` after `build --offline`)")
    lg.add_argument("--json", action="store_true", help="print the commits as JSON")
    lg.add_argument("--html", nargs="?", const="", default=None, metavar="DIR",
                    help="also write a page of the shot's keyframe at each of those commits "
                         "(default: build/<film>/log/)")
    lg.set_defaults(run=_log)


# --- compiling a revision --------------------------------------------------------------------


class _Failed(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _compile(main: Path, repo: Path | None, rev: str | None, offline: bool) -> Any:
    """The film at `rev` (None: the working tree) compiled to its graph; _Failed after
    printing why not."""
    from .compiler.pipeline import compile_film
    from .engine.lengths import lookup_for
    from .lang.tree import GitTree, TreeError, using

    if rev is None:
        result = compile_film(main, offline=offline, said=lookup_for)
    else:
        assert repo is not None
        try:
            tree = GitTree(repo, rev)
        except TreeError as e:
            raise _Failed(fail(e.message, e.hint)) from None
        with tree, using(tree):
            if not tree.is_file(main):
                rel = os.path.relpath(main, repo)
                raise _Failed(fail(f"`{rel}` does not exist in {rev}",
                                   "name a revision that has the film, or the film with --file"))
            result = compile_film(main, offline=offline, said=lookup_for)
    if not result.ok or result.graph is None:
        report(result.diags, result.sources)
        raise _Failed(1)
    return result


def _repo(main: Path) -> Path:
    from .lang.tree import TreeError, repo_root

    try:
        return repo_root(main.parent)
    except TreeError as e:
        raise _Failed(fail(e.message, e.hint)) from None


def _revisions(revs: list[str]) -> tuple[str, str | None]:
    """(old, new) from the arguments; new None is the working tree."""
    if len(revs) > 2:
        raise _Failed(fail("`filmc diff` compares two revisions at most",
                           "`filmc diff A B` or `filmc diff A..B`", USAGE_ERROR))
    if len(revs) == 1 and ".." in revs[0]:
        a, b = revs[0].split("..", 1)
        if "." in b[:1]:  # A...B: git's merge-base form
            raise _Failed(fail("`A...B` is not supported", "write `A..B`", USAGE_ERROR))
        return a or "HEAD", b or "HEAD"
    if len(revs) == 2:
        return revs[0], revs[1]
    return (revs[0] if revs else "HEAD"), None


def _stored(result: Any, keys: set[str]) -> set[str]:
    """The keys among `keys` whose outputs the project's store holds (they are paid for)."""
    from .engine.store import Store, StoreError, location

    try:
        store = Store.open(location(result.project.root, result.config.store))
    except StoreError:
        return set()
    if store is None:
        return set()
    with store:
        return store.actions_present(keys)


# --- filmc diff ---------------------------------------------------------------------------------


def _diff(args: argparse.Namespace) -> int:
    from .compiler.diff import compare, render_stat, render_text

    main = Path(os.path.normpath(Path.cwd() / args.file))
    try:
        old_rev, new_rev = _revisions(args.revs)
        repo = _repo(main)
        old = _compile(main, repo, old_rev, args.offline)
        new = _compile(main, repo, new_rev, args.offline)
    except _Failed as e:
        return e.code
    keys = {d["step"].key for _n, d in new.graph.nodes(data=True)}
    stored = _stored(new, keys)
    d = compare(old, new, old_rev, new_rev or WORKTREE, stored)
    if args.json:
        print(json.dumps(d.to_json(), ensure_ascii=False, indent=2))
    elif args.stat:
        print(render_stat(d))
    else:
        print(render_text(d, _painter(sys.stdout)))
    if args.html is not None:
        folder = Path(args.html) if args.html else _build_dir(new) / "diff"
        page = _diff_page(d, old, new, folder)
        print(f"wrote {page}", file=sys.stderr)
    return 0


def _painter(stream: Any) -> Any:
    from .lang.diagnostics import use_color

    if not use_color(stream):
        return None
    codes = {"bold": "1", "green": "32", "red": "31", "yellow": "33"}
    return lambda style, text: f"\x1b[{codes[style]}m{text}\x1b[0m"


def _build_dir(result: Any) -> Path:
    from .lang.paths import film_name

    root = result.project.root
    return root / "build" / film_name(result.project.main.path, root)


# --- pictures from the store --------------------------------------------------------------------


def _shot_media(result: Any, shot: str) -> dict[str, Any]:
    """The steps of a shot's keyframe (the one it uses) and conformed shot."""
    from .lang.steps import StepId

    graph = result.graph
    picks = graph.graph.get("picks", {})
    scene = next((s.scene for sc in result.film.scenes for s in sc.shots if s.id == shot), None)
    out: dict[str, Any] = {"keyframe": None, "shot": None}
    if scene is None:
        return out
    p = picks.get((scene, shot))  # by (scene, shot)
    used = p.keyframe.used if p is not None else None
    for kind, candidate in (("keyframe", used), ("shot", None)):
        node = str(StepId(kind, scene=scene, shot=shot, candidate=candidate))
        if node in graph:
            out[kind] = graph.nodes[node]["step"]
    return out


_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"RIFF", ".webp"), (b"GIF8", ".gif"))


class _Media:
    """Copies stored outputs into a page's folder (so the page stands alone)."""

    def __init__(self, result: Any, folder: Path) -> None:
        from .engine.store import Store, StoreError, location

        self.folder = folder
        try:
            self.store = Store.open(location(result.project.root, result.config.store))
        except StoreError:
            self.store = None

    def file(self, step: Any) -> str | None:
        """The page's path to the step's stored output (a pick's pinned one), or None."""
        if step is None or self.store is None:
            return None
        digest, ext = step.pin, ""
        if digest is None:
            action = self.store.get_actions([step.key]).get(step.key)
            if action is None or not action.outputs:
                return None
            digest, ext = action.outputs[0].get("digest"), action.outputs[0].get("ext", "")
        if not digest:
            return None
        src = self.store.objects.path(digest)
        if not src.is_file():
            return None
        if not ext:  # a pinned take: its kind from its first bytes
            with open(src, "rb") as f:
                head = f.read(4)
            ext = next((e for magic, e in _MAGIC if head.startswith(magic)), ".mp4")
        name = f"{digest[:16]}{ext}"
        dest = self.folder / "media" / name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        return f"media/{name}"

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


_STYLE = """body{font-family:system-ui,sans-serif;background:#16161a;color:#e8e8ea;margin:24px}
h1{font-size:20px}h2{font-size:16px;margin:28px 0 6px}.mark{font-family:monospace}
table{border-collapse:collapse}td{vertical-align:top;padding:4px 12px 4px 0}
img,video{width:320px;border-radius:4px;display:block;background:#222}
.none{width:320px;height:134px;display:flex;align-items:center;justify-content:center;
background:#26262c;color:#888;border-radius:4px;font-size:13px}
ul{margin:4px 0;padding-left:18px;font-family:monospace;font-size:13px}
.added{color:#7bd88f}.removed{color:#fc618d}.changed,.moved,.renamed{color:#fce566}"""


def _cell(src: str | None, what: str) -> str:
    if src is None:
        return f'<div class="none">{html.escape(what)} never built</div>'
    if src.endswith((".mp4", ".webm", ".mov")):
        return f'<video src="{html.escape(src)}" controls muted loop></video>'
    return f'<img src="{html.escape(src)}" alt="{html.escape(what)}">'


def _write_page(folder: Path, title: str, body: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "index.html"
    tmp = page.with_suffix(".tmp")
    tmp.write_text("<!doctype html><meta charset=utf-8>"
                   f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
                   f"<h1>{html.escape(title)}</h1>" + "\n".join(body), encoding="utf-8")
    os.replace(tmp, page)
    return page


def _diff_page(d: Any, old: Any, new: Any, folder: Path) -> Path:
    from .compiler.diff import ADDED, REMOVED

    old_media, new_media = _Media(old, folder), _Media(new, folder)
    body = []
    try:
        for s in d.shots:
            a = _shot_media(old, s.old_shot or s.shot) if s.status != ADDED else {}
            b = _shot_media(new, s.shot) if s.status != REMOVED else {}
            changes = [f.text() for f in s.fields] + [f"via {w}" for w in s.because]
            rows = []
            for kind in ("keyframe", "shot"):
                rows.append(f"<tr><td>{kind}</td>"
                            f"<td>{_cell(old_media.file(a.get(kind)), f'old {kind}')}</td>"
                            f"<td>{_cell(new_media.file(b.get(kind)), f'new {kind}')}</td></tr>")
            body.append(
                f'<h2><span class="mark {s.status}">{s.status}</span> '
                f"{html.escape(s.address)}</h2>"
                + ("<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in changes) + "</ul>"
                   if changes else "")
                + f"<table><tr><td></td><td>{html.escape(d.old_label)}</td>"
                  f"<td>{html.escape(d.new_label)}</td></tr>" + "".join(rows) + "</table>")
        if not d.shots:
            body.append("<p>no shot changed</p>")
    finally:
        old_media.close()
        new_media.close()
    return _write_page(folder, f"filmc diff {d.old_label} → {d.new_label}", body)


# --- filmc log ---------------------------------------------------------------------------------


def _commits(repo: Path, root: Path, n: int) -> list[tuple[str, str, str, str, str]]:
    """(hash, short hash, date, author, subject) of the last `n` commits that touched the
    project folder (its build/ and .filmc/ aside), newest first."""
    rel = os.path.relpath(root, repo)
    spec = [rel, f":(exclude){os.path.join(rel, 'build')}",
            f":(exclude){os.path.join(rel, '.filmc')}"]
    r = subprocess.run(["git", "log", f"-n{n}", "--format=%H%x00%h%x00%ad%x00%an%x00%s",
                        "--date=short", "--", *spec], cwd=repo, capture_output=True, text=True)
    if r.returncode != 0:
        return []  # no commit yet
    return [tuple(line.split("\0", 4)) for line in r.stdout.splitlines()  # type: ignore[misc]
            if line.count("\0") == 4]


def _log(args: argparse.Namespace) -> int:
    from .lang.diagnostics import did_you_mean

    main = Path(os.path.normpath(Path.cwd() / args.file))
    shot = args.shot.split("/")[-1]
    if args.max_count < 1:
        return fail("-n must be 1 or more", code=USAGE_ERROR)
    try:
        repo = _repo(main)
        now = _compile(main, repo, None, args.offline)
    except _Failed as e:
        return e.code
    commits = _commits(repo, now.project.root, args.max_count)
    compiled: dict[str, Any] = {}

    def at(rev: str) -> Any:
        if rev not in compiled:
            try:
                compiled[rev] = _compile(main, repo, rev, args.offline)
            except _Failed:
                compiled[rev] = None  # a commit where the film did not compile: said above
        return compiled[rev]

    shots_now = {s.id for sc in now.film.scenes for s in sc.shots}
    entries = []
    for full, short, date, author, subject in commits:
        new = at(full)
        if new is None:
            continue
        parents = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{full}^"],
                                 cwd=repo, capture_output=True, text=True).stdout.strip()
        old = at(parents) if parents else None
        if parents and old is None:
            continue
        change = _shot_change(old, new, shot)
        if change is None:
            continue
        entries.append({"commit": full, "short": short, "date": date, "author": author,
                        "subject": subject, **change, "_new": new})
    if not entries and shot not in shots_now and not any(
            shot in {s.id for sc in c.film.scenes for s in sc.shots}
            for c in compiled.values() if c is not None):
        guess = did_you_mean(shot, sorted(shots_now))
        return fail(f"no shot `{args.shot}` in this film or its history",
                    guess or "`filmc explain` lists the shots")
    if args.json:
        print(json.dumps([{k: v for k, v in e.items() if not k.startswith("_")}
                          for e in entries], ensure_ascii=False, indent=2))
    else:
        for e in entries:
            print(f"{e['short']} {e['date']} {e['subject']}  ({e['author']})")
            for line in e["lines"]:
                print(f"    {line}")
        if not entries:
            print(f"no commit in the last {args.max_count} changed `{shot}`", file=sys.stderr)
    if args.html is not None:
        folder = Path(args.html) if args.html else _build_dir(now) / "log"
        body = []
        for e in entries:
            media = _Media(e["_new"], folder)
            try:
                step = _shot_media(e["_new"], shot)["keyframe"] if e["status"] != "removed" \
                    else None
                cell = _cell(media.file(step), "keyframe")
            finally:
                media.close()
            body.append(f"<h2>{html.escape(e['short'])} {html.escape(e['date'])} "
                        f"{html.escape(e['subject'])}</h2><ul>"
                        + "".join(f"<li>{html.escape(x)}</li>" for x in e["lines"])
                        + f"</ul>{cell}")
        page = _write_page(folder, f"filmc log {shot}", body)
        print(f"wrote {page}", file=sys.stderr)
    return 0


def _shot_change(old: Any, new: Any, shot: str) -> dict | None:
    """What one commit did to `shot`: {"status", "lines"}, or None when nothing."""
    from .compiler.diff import ADDED, compare

    if old is None:  # the first commit
        present = any(s.id == shot for sc in new.film.scenes for s in sc.shots)
        return {"status": ADDED, "lines": ["added"]} if present else None
    d = compare(old, new, "", "")
    lines: list[str] = []
    status = None
    for s in d.shots:
        if s.shot == shot or s.old_shot == shot:
            status = s.status
            if s.status == "renamed":
                lines.append(f"renamed from {s.old_shot}" if s.shot == shot
                             else f"renamed to {s.shot}")
            elif s.status in ("added", "removed"):
                lines.append(s.status)
            elif s.old_scene:
                lines.append(f"moved from scene {s.old_scene}")
            elif s.status == "moved":
                lines.append("moved")
            lines += [f.text() for f in s.fields]
            for e in d.entities:
                if shot in e.shots and e.kind in ("character", "outfit", "location"):
                    lines += [f"{e.kind} {e.id}: {f.text()}" for f in e.fields]
    for p in d.picks:
        if p.shot == shot:
            lines.append(f"pick {p.text()}")
            status = status or "changed"
    if not lines:
        return None
    return {"status": status or "changed", "lines": list(dict.fromkeys(lines))}
