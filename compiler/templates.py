"""Prompt templates: jinja2, sandboxed, strict about undefined names.

One template per step kind (`keyframe.j2`, `clip.j2`, `sheet.j2`, `plate.j2`,
`speech.j2`) in `stdlib/templates/`.  A project overrides any of them by putting
its own in a `templates/` folder in the project folder, and can give one backend
its own variant: `templates/keyframe.fal.j2` is used for keyframes rendered by
`fal`, before `keyframe.j2`.  The text of the template a step uses is part of
that step's content key.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import attrs
import jinja2
from jinja2.runtime import new_context
from jinja2.sandbox import SandboxedEnvironment


class TemplateError(Exception):
    """A template that does not load or render; `file` and `line` say where."""

    def __init__(self, message: str, file: str, line: int, help: str | None = None) -> None:
        super().__init__(message)
        self.message, self.file, self.line, self.help = message, file, line, help


@attrs.frozen
class Template:
    name: str  # e.g. "keyframe.j2" or "keyframe.fal.j2"
    origin: str  # "project" or "std"
    digest: str  # sha256 of the source: part of every key this template renders
    compiled: jinja2.Template = attrs.field(eq=False, repr=False)

    @property
    def path(self) -> str:
        return f"templates/{self.name}" if self.origin == "project" else f"<std>/templates/{self.name}"

    def render(self, context: dict) -> str:
        t = self.compiled
        try:
            # Template.render copies the environment's globals on every call; thousands of
            # shots make that the cost of compiling, so merge them once and share the dict.
            ctx = new_context(t.environment, t.name, t.blocks, {**_globals(t), **context}, True)
            text = t.environment.concat(t.root_render_func(ctx))
        except Exception as e:  # a project's template can fail in any way: never a traceback
            raise TemplateError(f"template `{self.path}` failed: {e}", self.path, _line_of(e, t),
                                help=_render_help(e)) from None
        return "\n".join(line.rstrip() for line in text.strip().splitlines())


class Templates:
    """Finds, compiles and caches templates for one project."""

    def __init__(self, project_root: Path) -> None:
        self.project_dir = project_root / "templates"
        self.std_dir = Path(str(resources.files("filmc.stdlib").joinpath("templates")))
        self.env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                        keep_trailing_newline=False)
        self._cache: dict[tuple[str, str | None], Template] = {}
        self._by_name: dict[str, Template | None] = {}

    def get(self, kind: str, backend: str | None) -> Template:
        key = (kind, backend)
        found = self._cache.get(key)
        if found is None:
            names = ([f"{kind}.{backend}.j2"] if backend else []) + [f"{kind}.j2"]
            for name in names:
                found = self._load(name)
                if found is not None:
                    break
            else:
                raise TemplateError(f"no template for `{kind}` steps", f"templates/{kind}.j2", 1,
                                    help=f"add `templates/{kind}.j2` beside your films")
            self._cache[key] = found
        return found

    def _load(self, name: str) -> Template | None:
        if name in self._by_name:
            return self._by_name[name]
        result = None
        for origin, folder in (("project", self.project_dir), ("std", self.std_dir)):
            path = folder / name
            if path.is_file():
                source = path.read_text(encoding="utf-8")
                display = f"templates/{name}" if origin == "project" else f"<std>/templates/{name}"
                try:
                    compiled = self.env.from_string(source)
                except jinja2.TemplateSyntaxError as e:
                    raise TemplateError(f"template `{display}` has a syntax error: {e.message}",
                                        display, e.lineno or 1) from None
                digest = hashlib.sha256(source.encode()).hexdigest()
                result = Template(name, origin, digest, compiled)
                break
        self._by_name[name] = result
        return result


_GLOBALS: dict[int, dict] = {}


def _globals(t: jinja2.Template) -> dict:
    g = _GLOBALS.get(id(t))
    if g is None:
        g = _GLOBALS[id(t)] = dict(t.globals)
    return g


def _line_of(e: BaseException, t: jinja2.Template) -> int:
    """The template line that failed.  Rendering bypasses jinja2's traceback rewriting, so
    the frames hold lines of the generated Python: map them back through its debug info."""
    tb = e.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = t.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _render_help(e: Exception) -> str | None:
    if isinstance(e, jinja2.UndefinedError):
        return ("the names a template can use are listed in docs/templates.md; "
                "check the spelling")
    return None
