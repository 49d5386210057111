"""The storyboard's index: one small HTML page naming every scene and its contact sheets.

Each scene's pages are a step of their own (`storyboard.<scene>`, drawn by
`panels.render_storyboard`), so that an edit redraws one scene.  The index is
the step that depends on all of them, and it runs after every edit, so it must
cost nothing: it names the pages (how many each scene step made, and their
extension, read off its inputs) and never opens one.  The browser scales the
pages into thumbnails.

    storyboard/index.html   this page
    storyboard/hunt.png     scene `hunt`, page 1; hunt-2.png, page 2 ...

The file names are lang/files.py's, relative to the index, so the page works
wherever build/<film>/ is copied.  Deterministic: the same scenes and pages
give the same bytes.
"""

from __future__ import annotations

import html
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

from ...lang.files import storyboard_file

_STYLE = """\
:root { color-scheme: dark; }
body { margin: 0; padding: 12px 20px 60px; background: #16171a; color: #e6e6e6;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC",
  "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Source Han Sans SC", sans-serif; }
h1 { font-size: 18px; margin: 4px 0; } .dim { color: #9a9ea6; }
nav ol { columns: 16em; margin: 10px 0 18px; padding-left: 2.5em; }
section { margin: 18px 0; } h2 { font-size: 15px; margin: 0 0 6px; font-weight: 600; }
h2 .id, h2 .n { color: #9a9ea6; font-weight: normal; }
.pages { display: flex; flex-wrap: wrap; gap: 10px; }
.pages a { display: block; width: 240px; height: 300px; overflow: hidden; border: 1px solid #33363c;
  border-radius: 4px; background: #000; }
.pages img { display: block; width: 100%; }
a { color: #8ab4f8; }
"""


def write_index(spec: dict[str, Any], inputs: list[list[Any]], out: Path) -> None:
    """`spec["scenes"]`: [step id or None, scene id, number, title, shots] in film order;
    `inputs`: each scene step's pages, tagged with the step's id (the sixth item) and
    their extension (the seventh), in the order that step made them.  (Not the film's title: a display name is in no key,
    and the page is `storyboard/index.html` of the film's own folder.)"""
    pages: dict[str, list[str]] = {}
    for item in inputs:
        pages.setdefault(item[5], []).append(item[6])
    scenes = spec["scenes"]
    shots = sum(int(s[4]) for s in scenes)
    total = sum(len(v) for v in pages.values())
    e = html.escape
    body = ["<h1>Storyboard</h1>",
            f'<p class="dim">{_count(len(scenes), "scene")} · {_count(shots, "shot")} · '
            f'{_count(total, "page")}</p>', "<nav><ol>"]
    body += [f'<li><a href="#scene-{e(scene)}">{e(str(name) or scene)}</a> '
             f'<span class="dim">({n})</span></li>' for _sid, scene, _num, name, n in scenes]
    body.append("</ol></nav>")
    for sid, scene, number, name, n in scenes:
        body.append(f'<section id="scene-{e(scene)}">')
        body.append(f'<h2>{number}. <b>{e(str(name) or scene)}</b> <span class="id">{e(scene)}'
                    f'</span> <span class="n">· {_count(int(n), "shot")}</span></h2>')
        exts = pages.get(sid, []) if sid is not None else []
        if not exts:
            body.append('<p class="dim">no shots, no pages</p>')
        else:
            body.append('<div class="pages">')
            for k, ext in enumerate(exts, 1):
                file = _url(PurePosixPath(storyboard_file(scene, k, ext)).name)
                alt = e(f"{scene}, page {k}")
                body.append(f'<a href="{file}" title="{alt}"><img src="{file}" alt="{alt}" '
                            f'loading="lazy" decoding="async"></a>')
            body.append("</div>")
        body.append("</section>")
    doc = ["<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>Storyboard</title>",
           f"<style>\n{_STYLE}</style>", "</head>", "<body>", *body, "</body>", "</html>", ""]
    out.write_text("\n".join(doc), encoding="utf-8")


def _url(name: str) -> str:
    return html.escape(urllib.parse.quote(name), quote=True)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
