"""`filmc lsp`: a language server for `.film` files, over stdio (pygls).

What it answers, and from where (each is the compiler's own answer, never a second
implementation of it):

- diagnostics as you type: `compile_film(..., until="check")` over the editor's
  text (filmc/lsp_workspace.py), for the whole film a file belongs to, a moment
  after the last keystroke (`debounce`); on save, a film with a `film.lock` is also
  compiled to its step graph, as `filmc check` does, for the stale-pick warnings;
- quick fixes from the diagnostics' own help (filmc/lsp_actions.py);
- completion of the film's names and the schema's words (filmc/lsp_complete.py);
- hover: a shot's prompt, plan status and cost, a preset's words, a character's
  look and references (filmc/lsp_hover.py);
- definition, references and rename across the film's files (filmc/lsp_index.py);
- formatting (`lang.fmt.format_text`, as `filmc fmt`) and the outline.

Compiles run on one worker thread, so that a request needing none (completion, an
outline) is answered while a check runs.  A failure inside the server is one line
in the client's log, never a traceback (`filmc --debug lsp` lets them through).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from . import __version__
from .lang.diagnostics import Diagnostic, Diagnostics
from .lang.loader import display_path
from .lsp import DEBOUNCE_S
from .lsp_actions import Positions, code_actions, diagnostic_key, symbols, to_lsp
from .lsp_complete import Facts, complete, where
from .lsp_index import SHOT, Index, Occurrence, RenameError, rename
from .lsp_workspace import UTF16, FilmCheck, Workspace, path_of

REQUEST_FAILED = -32803  # LSP's RequestFailed: a rename that cannot be done, and why
log = logging.getLogger("filmc.lsp")
F = TypeVar("F", bound=Callable[..., Any])


def path_of_uri(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(os.path.normpath(unquote(parsed.path)))


# --- the server --------------------------------------------------------------------------------


class FilmServer(LanguageServer):
    def __init__(self, debounce: float | None = None, debug: bool = False) -> None:
        super().__init__("filmc", __version__)
        # A check runs on the worker thread while the event loop answers requests: hand the
        # interpreter over more often than every 5 ms, or a completion waits on each switch.
        sys.setswitchinterval(0.0005)
        self.ws = Workspace()
        self.debounce = DEBOUNCE_S if debounce is None else debounce
        self.debug = debug
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filmc-compile")
        self.pending: set[Path] = set()
        self.graph_wanted: set[Path] = set()
        self.runner: asyncio.Task | None = None
        self.extra: dict[Path, list[Diagnostic]] = {}  # graph-stage diagnostics of a film
        self.published: dict[Path, dict[str, list[lsp.Diagnostic]]] = {}  # film → uri → diags
        self.sent: dict[str, list[lsp.Diagnostic]] = {}  # uri → what the client has
        self._index: tuple[tuple[Path, int], Index] | None = None
        _register(self)

    def report_server_error(self, error: Exception, source: Any) -> None:
        log.error("filmc lsp: %s", str(error).splitlines()[0] if str(error) else error)

    @property
    def encoding(self) -> str:
        enc = self.workspace.position_encoding
        return str(getattr(enc, "value", enc) or UTF16)

    def positions(self) -> Positions:
        return Positions(self.ws, self.encoding)

    # -- checking as the user types --------------------------------------------------------

    def schedule(self, path: Path, graph: bool = False) -> None:
        self.pending.add(path)
        if graph:
            self.graph_wanted.add(path)
        if self.runner is None or self.runner.done():
            self.runner = asyncio.get_running_loop().create_task(self._checks())

    async def _checks(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            generation = self.ws.generation
            await asyncio.sleep(self.debounce)
            if self.ws.generation != generation:
                continue  # still typing
            paths, self.pending = self.pending, set()
            graph, self.graph_wanted = self.graph_wanted, set()
            texts = self.ws.snapshot()
            try:
                films = await loop.run_in_executor(self.pool, self._films, sorted(paths))
                mains: dict[Path, bool] = {}
                for p, of in films:
                    for main in of:
                        mains[main] = mains.get(main, False) or p in graph
                for main, want_graph in mains.items():
                    result = await loop.run_in_executor(
                        self.pool, self.ws.compile, main, texts, generation, "check")
                    self.ws.record(result)
                    self.publish(result)
                    if want_graph:
                        await self._graph_stage(main, texts, generation)
            except Exception as e:  # a bug: one line in the log, and the next edit tries again
                self._bug("checking", e)

    def _films(self, paths: list[Path]) -> list[tuple[Path, tuple[Path, ...]]]:
        """Which films the edited files are checked in (on the worker: it may read the disk)."""
        return [(p, self.ws.films_of(p)) for p in paths]

    async def _graph_stage(self, main: Path, texts: dict[Path, str], generation: int) -> None:
        """As `filmc check` does for a film with a lock: the step graph's diagnostics too."""
        from .compiler.lock import lock_path

        if not lock_path(main).is_file():
            self.extra.pop(main, None)
            return
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.pool, self.ws.compile, main, texts, generation,
                                            "graph")
        self.ws.record(result)
        self._note_graph(result)

    def _note_graph(self, result: FilmCheck) -> None:
        """Keep what a graph compile found beyond the check, and publish it with the check."""
        from .compiler.lock import lock_path

        check = self.ws.checks.get(result.main)
        if check is None or check.generation != result.generation:
            return
        seen = {(d.code, d.message, d.span) for d in check.diagnostics}
        self.extra[result.main] = [d for d in result.diagnostics if (d.code, d.message, d.span)
                                   not in seen] if lock_path(result.main).is_file() else []
        self.publish(check)

    def publish(self, result: FilmCheck) -> None:
        """Send each file of the film its diagnostics (and an empty list to a file that had
        some and has none now)."""
        files = result.files()
        pos = self.positions()
        by_uri: dict[str, list[lsp.Diagnostic]] = {}
        for d in [*result.diagnostics, *self.extra.get(result.main, [])]:
            path = path_of(d.span.file, files) if d.span is not None else result.main
            if d.span is not None and d.span.file.startswith("<std>"):
                continue  # the standard library is not the user's to fix
            by_uri.setdefault(path.as_uri(), []).append(to_lsp(d, path, pos, files))
        for uri in self.published.get(result.main, {}):
            by_uri.setdefault(uri, [])  # had some: now has none
        for path in self.ws.texts:
            if path in files.values() or path == result.main:
                by_uri.setdefault(path.as_uri(), [])  # an open file hears it was checked
        self.published[result.main] = by_uri
        open_uris = {p.as_uri() for p in self.ws.texts}
        for uri in by_uri:
            merged = [d for film in self.published.values() for d in film.get(uri, [])]
            if self.sent.get(uri, []) != merged or uri in open_uris:
                self.sent[uri] = merged
                self.text_document_publish_diagnostics(
                    lsp.PublishDiagnosticsParams(uri=uri, diagnostics=merged))

    # -- what requests share ---------------------------------------------------------------

    def film_of(self, path: Path) -> Path:
        return self.ws.films_of(path)[0]

    def index(self, path: Path) -> Index | None:
        main = self.film_of(path)
        project = self.ws.project(main)
        if project is None:
            return None
        cached = self._index
        if cached is not None and cached[0] == (main, self.ws.generation):
            return cached[1]
        index = Index(project)
        self._index = ((main, self.ws.generation), index)
        return index

    def occurrence(self, uri: str, position: lsp.Position) -> tuple[Occurrence | None, Index | None]:
        path = path_of_uri(uri)
        index = self.index(path)
        if index is None:
            return None, None
        line, col = self.positions().from_client(path, position)
        return index.at(display_path(path), line, col), index

    async def latest_check(self, path: Path) -> FilmCheck:
        """The film's latest check, made now when there is none yet."""
        main = self.film_of(path)
        found = self.ws.checks.get(main)
        if found is None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self.pool, self.ws.compile, main,
                                               self.ws.snapshot(), self.ws.generation, "check")
            self.ws.record(found)
        return found

    async def graph(self, path: Path) -> FilmCheck:
        """The film compiled to its step graph for the text as it is now."""
        main = self.film_of(path)
        found = self.ws.current_graph(main)
        if found is None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self.pool, self.ws.compile, main,
                                               self.ws.snapshot(), self.ws.generation, "graph")
            self.ws.record(found)
            self._note_graph(found)
        return found

    def location(self, occ: Occurrence) -> lsp.Location:
        return lsp.Location(uri=occ.path.as_uri(), range=self.positions().range(occ.path, occ.span))

    def _bug(self, what: str, e: Exception) -> None:
        if self.debug:
            raise e
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where_ = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
        message = (f"filmc lsp: internal error while {what} ({type(e).__name__} at {where_}); "
                   "this is a bug in filmc, please report it")
        log.error(message)
        self.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Error, message=message))


def _guard(server: FilmServer, what: str) -> Callable[[F], F]:
    """A handler whose failure is one line in the client's log and an empty answer."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def handler(*args: Any) -> Any:
            try:
                return await fn(*args)
            except JsonRpcException:
                raise
            except Exception as e:
                server._bug(what, e)
                return None
        return handler  # type: ignore[return-value]
    return wrap


# --- the features ---------------------------------------------------------------------------------


def _register(server: FilmServer) -> None:  # noqa: C901 - one handler a feature, in one place
    @server.feature(lsp.INITIALIZE)
    def initialize(params: lsp.InitializeParams) -> None:
        options = params.initialization_options
        if isinstance(options, dict) and isinstance(options.get("debounce"), (int, float)):
            server.debounce = max(0.0, float(options["debounce"]))
        root = params.root_uri or (params.workspace_folders[0].uri
                                   if params.workspace_folders else None)
        if root is not None and path_of_uri(root).is_dir():
            os.chdir(path_of_uri(root))  # messages name files as `filmc check` run there would

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(params: lsp.DidOpenTextDocumentParams) -> None:
        path = path_of_uri(params.text_document.uri)
        server.ws.set_text(path, params.text_document.text, params.text_document.version)
        server.schedule(path)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(params: lsp.DidChangeTextDocumentParams) -> None:
        doc = server.workspace.get_text_document(params.text_document.uri)
        path = path_of_uri(doc.uri)
        server.ws.set_text(path, doc.source, params.text_document.version)
        server.schedule(path)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE, lsp.SaveOptions(include_text=False))
    async def did_save(params: lsp.DidSaveTextDocumentParams) -> None:
        path = path_of_uri(params.text_document.uri)
        server.ws.saved()
        server.schedule(path, graph=True)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def watched(params: lsp.DidChangeWatchedFilesParams) -> None:
        """filmc.toml or a film.lock changed on disk (the editor watches them): check the
        films again, to the graph where they have a lock."""
        server.ws.saved()
        for main in list(server.ws.checks):
            server.schedule(main, graph=True)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(params: lsp.DidCloseTextDocumentParams) -> None:
        path = path_of_uri(params.text_document.uri)
        server.ws.close(path)
        server.schedule(path)

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                    lsp.CompletionOptions(trigger_characters=[" ", "(", ","]))
    @_guard(server, "completing")
    async def completion(params: lsp.CompletionParams) -> lsp.CompletionList:
        path = path_of_uri(params.text_document.uri)
        module = server.ws.module(path)
        if module is None:
            return lsp.CompletionList(is_incomplete=False, items=[])
        check = await server.latest_check(path)
        config = check.compiled.config
        facts = Facts(check.compiled.checked.symbols if check.compiled.checked else None,
                      tuple(sorted(config.backends)) if config is not None else ())
        pos = server.positions()
        line, _col = pos.from_client(path, params.position)
        items = complete(module, pos.prefix(path, params.position), line, facts)
        return lsp.CompletionList(is_incomplete=False, items=items)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @_guard(server, "hovering")
    async def hover(params: lsp.HoverParams) -> lsp.Hover | None:
        from . import lsp_hover

        path = path_of_uri(params.text_document.uri)
        occ, index = server.occurrence(params.text_document.uri, params.position)
        line, col = server.positions().from_client(path, params.position)
        if occ is None and index is not None:  # anywhere on a shot's header line
            occ = next((o for o in index.on_line(display_path(path), line)
                        if o.definition and o.symbol.kind == SHOT), None)
        if occ is None or index is None:
            module = server.ws.module(path)
            word = _attribute_at(server.ws.line(path, line), col)
            here = where(module, line, col) if module is not None and word else None
            text = lsp_hover.attribute(here.spec, word) if here and here.spec and word else None
        elif occ.symbol.kind == SHOT:
            defs = [occ] if occ.definition else index.definitions(occ.symbol)
            if not defs:
                return None
            compiled = (await server.graph(path)).compiled
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(server.pool, _shot_hover, defs[0], compiled)
        else:
            text = lsp_hover.declaration(occ, index)
        if not text:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @_guard(server, "finding a definition")
    async def definition(params: lsp.DefinitionParams) -> list[lsp.Location] | None:
        occ, index = server.occurrence(params.text_document.uri, params.position)
        if occ is None or index is None:
            return None
        return [server.location(d) for d in index.definitions(occ.symbol)] or None

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    @_guard(server, "finding references")
    async def references(params: lsp.ReferenceParams) -> list[lsp.Location] | None:
        occ, index = server.occurrence(params.text_document.uri, params.position)
        if occ is None or index is None:
            return None
        keep = params.context.include_declaration
        return [server.location(o) for o in index.uses(occ.symbol) if keep or not o.definition]

    @server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
    @_guard(server, "preparing a rename")
    async def prepare_rename(params: lsp.PrepareRenameParams) -> Any:
        occ, index = server.occurrence(params.text_document.uri, params.position)
        if occ is None or index is None:
            return None
        try:
            rename(index, occ.symbol, occ.symbol.name)
        except RenameError as e:
            raise JsonRpcException(str(e), REQUEST_FAILED) from None
        return lsp.PrepareRenamePlaceholder(range=server.positions().range(occ.path, occ.span),
                                            placeholder=occ.symbol.name)

    @server.feature(lsp.TEXT_DOCUMENT_RENAME, lsp.RenameOptions(prepare_provider=True))
    @_guard(server, "renaming")
    async def rename_(params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
        occ, index = server.occurrence(params.text_document.uri, params.position)
        if occ is None or index is None:
            return None
        try:
            edits = rename(index, occ.symbol, params.new_name)
        except RenameError as e:
            raise JsonRpcException(str(e), REQUEST_FAILED) from None
        pos = server.positions()
        changes: dict[str, list[lsp.TextEdit]] = {}
        for edit in edits:
            changes.setdefault(edit.path.as_uri(), []).append(
                lsp.TextEdit(range=pos.range(edit.path, edit.span), new_text=edit.new))
        return lsp.WorkspaceEdit(changes=changes)

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    @_guard(server, "formatting")
    async def formatting(params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
        from .lang.fmt import format_text

        path = path_of_uri(params.text_document.uri)
        text = server.ws.text(path)
        if text is None:
            return None
        out = format_text(text, display_path(path), Diagnostics())
        if out is None:  # syntax errors: never rewritten (the diagnostics say where)
            return None
        if out == text:
            return []
        return [lsp.TextEdit(range=server.positions().whole(path), new_text=out)]

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guard(server, "listing symbols")
    async def document_symbol(params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
        path = path_of_uri(params.text_document.uri)
        module = server.ws.module(path)
        return symbols(module, path, server.positions()) if module is not None else []

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
    @_guard(server, "listing quick fixes")
    async def code_action(params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        uri = params.text_document.uri
        known = {diagnostic_key(d): d for d in server.sent.get(uri, [])}
        return code_actions(uri, params.context.diagnostics, known)


def _attribute_at(line: str, col: int) -> str | None:
    """The attribute name under the cursor: the first word of the line."""
    stripped = line.lstrip()
    start = len(line) - len(stripped) + 1
    word = stripped.split(" ", 1)[0] if stripped else ""
    return word if word.isidentifier() and start <= col <= start + len(word) else None


def _shot_hover(occ: Occurrence, compiled: Any) -> str:
    """On the worker thread: the shot's hover, with what earlier builds left (its plan)."""
    from . import lsp_hover
    from .lang import ast

    shot, scene = occ.node, occ.parent
    assert isinstance(shot, ast.Shot) and isinstance(scene, ast.Scene)
    if compiled is None or compiled.graph is None:
        return lsp_hover.shot(shot, scene, compiled, None)
    from .engine.history import open_history

    with open_history(compiled.program()) as history:
        return lsp_hover.shot(shot, scene, compiled, history)

