"""Prompt templates: jinja2, sandboxed, strict about undefined names.

One template per step kind (`keyframe.j2`, `clip.j2`, `sheet.j2`, `plate.j2`,
`speech.j2`) in `stdlib/templates/`.  A project overrides any of them by putting
its own in a `templates/` folder in the project folder, and can give one backend
its own variant: `templates/keyframe.fal.j2` is used for keyframes rendered by
`fal`, before `keyframe.j2`.  The text of the template a step uses is part of
that step's content key.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import Namespace

from ..lang.paths import PathProblem, check_target
from ..lang.tree import WORK
from ..lang.tree import current as current_tree


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
        token = _BUDGET.set([MAX_ITEMS])
        try:
            # Template.render copies the environment's globals on every call; thousands of
            # shots make that the cost of compiling, so merge them once and share the dict.
            ctx = new_context(t.environment, t.name, t.blocks, {**_globals(t), **context}, True)
            text = _bounded_concat(t.root_render_func(ctx))
        except (Exception, MemoryError, RecursionError) as e:  # a project's template can fail
            # in any way (and may be written to exhaust memory): never a traceback
            raise TemplateError(f"template `{self.path}` failed: {e}", self.path, _line_of(e, t),
                                help=_render_help(e)) from None
        finally:
            _BUDGET.reset(token)
        return "\n".join(line.rstrip() for line in text.strip().splitlines())


class Templates:
    """Finds, compiles and caches templates for one project."""

    def __init__(self, project_root: Path) -> None:
        self.project_dir = project_root / "templates"
        self.std_dir = Path(str(resources.files("filmc.stdlib").joinpath("templates")))
        self.env = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False,
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

    def load(self, name: str) -> Template | None:
        """The template file `name` (`keyframe.openai.j2`), the project's before filmc's,
        or None where neither has it."""
        return self._load(name)

    def loaded(self) -> dict[str, str | None]:
        """Every template file name looked for so far → its digest, or None: not found."""
        return {name: None if t is None else t.digest for name, t in self._by_name.items()}

    def _load(self, name: str) -> Template | None:
        if name in self._by_name:
            return self._by_name[name]
        result = None
        for origin, folder in (("project", self.project_dir), ("std", self.std_dir)):
            path = folder / name
            display = f"templates/{name}" if origin == "project" else f"<std>/templates/{name}"
            tree = current_tree() if origin == "project" else WORK
            if origin == "project" and tree.lexists(path):
                try:  # a project's template is read like any file a film names
                    check_target(path, self.project_dir.parent, f"templates/{name}", "template")
                except PathProblem as e:
                    raise TemplateError(e.message, display, 1, help=e.help) from None
                entry = tree.entry(path)
                if entry is not None and entry.size > MAX_TEMPLATE_BYTES:
                    raise TemplateError(f"template `{display}` is larger than "
                                        f"{MAX_TEMPLATE_BYTES >> 10} KB", display, 1)
            if tree.is_file(path):
                source = tree.read_bytes(path).decode("utf-8")
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


# --- the sandbox: what a template may build --------------------------------------------------
#
# jinja2's sandbox keeps a template away from Python's internals, but not from building a
# string of a gigabyte (`{{ 'a' * 10**9 }}`).  These bounds keep one render small: no string,
# list or number past them, a rendered prompt of at most MAX_OUTPUT characters, and at most
# MAX_ITEMS items from `range` in one render.  A template that passes one fails with F0601.

MAX_TEMPLATE_BYTES = 1 << 20  # a template file
MAX_OUTPUT = 100_000  # characters one template renders
MAX_ITEMS = 1_000_000  # `range` items one render may go through, all loops together
MAX_LENGTH = 100_000  # a string, list or tuple a template builds with `*` or a width argument
MAX_INT_BITS = 4096  # an integer a template computes (`**`, `*`, `<<`)
_BUDGET: ContextVar[list[int]] = ContextVar("filmc_template_budget")


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what}: templates may not build values that large "
                         f"(strings and lists up to {MAX_LENGTH:,} items)")


def _check_arg(v: Any) -> None:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_LENGTH:
        raise _too_big(f"the number {v if v.bit_length() < 64 else 'given'} is too large here")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with sizes bounded (see MAX_LENGTH and MAX_INT_BITS)."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # placeholder text has no place in a prompt
        self.globals["range"] = _range
        self.globals["namespace"] = _Namespace
        self.filters = {name: _bounded_filter(f) for name, f in self.filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, type(left)):
            if len(left) + len(right) > MAX_LENGTH:
                raise _too_big(f"joining {len(left):,} and {len(right):,} items")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) \
                        and len(seq) * max(n, 0) > MAX_LENGTH:
                    raise _too_big(f"repeating {len(seq):,} items {n} times")
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _too_big("the product is too large a number")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
                raise _too_big("the power is too large a number")
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise _too_big("a `%` format with a `*` or a width over four digits")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name in _WIDENING:
            for v in (*args, *kwargs.values()):
                _check_arg(v)
        if isinstance(owner, str) and name in ("format", "format_map") and _WIDE_FIELD.search(owner):
            raise _too_big("a format field wider than four digits")
        return super().call(__context, __obj, *args, **kwargs)


_WIDENING = frozenset(["center", "ljust", "rjust", "zfill", "expandtabs"])
_WIDE_FIELD = re.compile(r"\{[^}]*:[^}]*(\d{5,}|\{)")


class _Namespace(Namespace):
    """`namespace()`, whose attributes cannot grow past the bounds (`ns.x = ns.x ~ ns.x`)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_LENGTH:
            raise _too_big(f"`{name}` would hold {len(value):,} items")
        super().__setitem__(name, value)


_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\*|\d{5,})")


def _range(*args: int) -> range:
    r = safe_range(*args)
    budget = _BUDGET.get(None)
    if budget is None:  # rendered outside Template.render (as jinja2 folds constants)
        budget = [MAX_ITEMS]
    budget[0] -= len(r)
    if budget[0] < 0:
        raise _too_big(f"`range` went past {MAX_ITEMS:,} items in one render")
    return r


def _bounded_filter(f: Any) -> Any:
    skip = 2 if getattr(f, "jinja_pass_arg", None) else 1  # (the context and) the value

    @functools.wraps(f)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for v in (*args[skip:], *kwargs.values()):
            _check_arg(v)
        return f(*args, **kwargs)
    return bounded


def _bounded_concat(chunks: Iterator[str]) -> str:
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise SecurityError(f"the template renders more than {MAX_OUTPUT:,} characters")
        out.append(chunk)
    return "".join(out)


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
