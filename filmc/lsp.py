"""`filmc lsp`: the language server for `.film` files (filmc/lsp_server.py), for editors.

This module is what the command line imports for every command, so it imports
nothing heavy: the server, pygls and the compiler load when `filmc lsp` runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

DEBOUNCE_S = 0.2  # quiet time after a keystroke before the film is checked again


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("lsp", help="run the language server for editors (stdio)",
                       description="Run filmc's language server on standard input and output "
                                   "(the Language Server Protocol): live diagnostics with quick "
                                   "fixes, completion, hover with a shot's prompt and cost, go "
                                   "to definition, references, rename, formatting and the "
                                   "outline. Editors start it themselves: see docs/editors.md.")
    p.add_argument("--stdio", action="store_true",
                   help="speak over standard input and output (the default; accepted because "
                        "some clients pass it)")
    p.add_argument("--debounce", type=float, default=None, metavar="SECONDS",
                   help=f"quiet time after a keystroke before checking (default {DEBOUNCE_S}; "
                        "a client may also set `debounce` in its initialization options)")
    p.add_argument("--log-file", type=Path, default=None, metavar="FILE",
                   help="write the server's log here (it never writes to stdout, which is the "
                        "protocol's)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(filename=args.log_file, level=logging.INFO if args.log_file
                        else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if not (args.debug or args.log_file):  # pygls logs tracebacks: only when asked for
        logging.getLogger("pygls").setLevel(logging.CRITICAL)
    from .lsp_server import FilmServer

    server = FilmServer(debounce=args.debounce, debug=args.debug)
    server.start_io()
    # The protocol's exit code: 0 after a `shutdown` request, else 1.  The server closed
    # stdout on `exit`: leave now, as `filmc` leaves after every command (cli.entry).
    code = 0 if getattr(server.protocol, "_shutdown", False) else 1
    sys.stderr.flush()
    os._exit(code)
