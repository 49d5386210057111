"""`filmc cache status|push|pull`: the team's remote cache, synced by hand.

A build reads through and writes through the remote cache by itself (engine/sharing.py);
these commands are for what a build does not do:

- `status`: what this project needs (its steps, as configured and offline, and the
  outputs film.lock pins), counted and sized in the local store and in the remote cache;
  what each lacks of the other.
- `push`: everything this project needs that the remote lacks and the local store holds
  (paid steps first): an upload a build could not make, or results made before the
  remote cache was configured.  Refused on a read-only client (`[cache] write = false`).
- `pull`: everything the working tree needs, actions and bytes, so that the project
  builds (and `filmc plan` says so) without the network.

Every object is verified both ways (engine/remotecache.py); a corrupt remote object is
named by its digest and never enters the local store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import attrs

from .common import FILE_HELP, compile_or_report, fail, human_bytes

SHOW = 5  # steps named in a list before "and N more"


def add_parsers(sub: Any) -> None:
    c = sub.add_parser("cache", help="the team's shared cache: status, push, pull",
                       description="Sync the local store with the remote cache that `[cache] "
                                   "remote` in filmc.toml names (docs/team.md).")
    cs = c.add_subparsers(dest="cache_command", metavar="COMMAND")
    cs.required = True
    for name, what, run in (
            ("status", "count what this project needs, locally and remotely, and what each "
                       "lacks", _status),
            ("push", "upload what this project needs that the remote cache lacks", _push),
            ("pull", "download what the working tree needs, actions and bytes", _pull)):
        p = cs.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        p.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
        p.set_defaults(run=run)


@attrs.frozen
class _Project:
    root: Path
    store: Path
    cache: Any  # compiler.config.CacheConfig
    keys: frozenset[str]
    pins: frozenset[str]
    names: dict  # key → step id, for messages


def _project(args: argparse.Namespace) -> _Project | int:
    """What the project needs, as configured and offline (as `filmc gc` counts it)."""
    from .engine.roots import Needs, needs_of
    from .engine.store import location

    needs, names, result = Needs(), {}, None
    for offline in (False, True):
        result = compile_or_report(args.file, offline=offline)
        if result is None:
            return 1
        needs = needs | needs_of(result.graph, result.lock)
        for n in result.graph.nodes:
            step = result.graph._node[n]["step"]
            names.setdefault(step.key, step.id)
    assert result is not None and result.config is not None and result.project is not None
    if result.config.cache is None:
        return fail("filmc.toml configures no remote cache",
                    'add `[cache]` with `remote = "s3://bucket/prefix"` or a shared folder '
                    '(docs/team.md)')
    root = Path(result.project.root)
    return _Project(root, location(root, result.config.store), result.config.cache,
                    needs.keys, needs.digests, names)


def _open(p: _Project, create: bool) -> Any:
    from .engine.remotecache import open_remote, writes
    from .engine.sharing import Shared
    from .engine.store import Store

    store = Store.open(p.store, create=create)
    if store is None:
        return None
    remote = open_remote(p.cache, p.root)
    return Shared(remote, store, writes(p.cache), p.cache.lease, str(p.root.resolve()))


def _run(args: argparse.Namespace, work: Any, create: bool = False) -> int:
    from .engine.db import StoreError
    from .engine.lock import project_lock
    from .engine.remotecache import RemoteError
    from .engine.roots import store_lock
    from .engine.state import state_dir

    p = _project(args)
    if isinstance(p, int):
        return p
    try:
        with project_lock(state_dir(p.root), wait=True), store_lock(p.store, "cache",
                                                                     shared=True):
            shared = _open(p, create)
            if shared is None:
                return work(p, None)
            with shared.store:
                return work(p, shared)
    except RemoteError as e:
        return fail(e.message, e.hint)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1


# --- status -----------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    return _run(args, _show_status)


def _show_status(p: _Project, shared: Any) -> int:
    from .engine.remotecache import open_remote, writes

    remote = shared.remote if shared is not None else open_remote(p.cache, p.root)
    local = shared.store.get_actions(p.keys) if shared is not None else {}
    local_objects = dict(shared.store.objects.all()) if shared is not None else {}
    remote_keys = remote.action_keys()
    remote_objects = remote.objects()
    remote_actions = remote.get_actions(p.keys & remote_keys)
    mode = "read-write" if writes(p.cache) else \
        "read-only (`[cache] write = false`, or FILMC_CACHE_WRITE=0)"
    print(f"remote cache: {remote.url}, {mode}")
    needed = _digests(local) | _digests(remote_actions) | p.pins
    here = {d for d in needed if d in local_objects}
    there = {d for d in needed if d in remote_objects}
    size = {**remote_objects, **local_objects}
    print(f"this project needs {len(p.keys)} steps and {len(needed)} stored outputs known "
          f"for them:")
    print(f"  local store:  {len(local)} steps, {len(here)} outputs "
          f"({human_bytes(sum(local_objects[d] for d in here))})")
    print(f"  remote cache: {len(remote_actions)} steps, {len(there)} outputs "
          f"({human_bytes(sum(remote_objects[d] for d in there))})")
    only_local = sorted(set(local) - set(remote_actions))
    lacking_remote = here - there
    only_remote = sorted(set(remote_actions) - set(local))
    lacking_local = there - here
    print(f"  missing remotely (`filmc cache push` sends): {len(only_local)} steps, "
          f"{len(lacking_remote)} outputs ({human_bytes(sum(size[d] for d in lacking_remote))})"
          + _named(only_local, p.names))
    print(f"  missing locally (`filmc cache pull` fetches): {len(only_remote)} steps, "
          f"{len(lacking_local)} outputs ({human_bytes(sum(size[d] for d in lacking_local))})"
          + _named(only_remote, p.names))
    lost = needed - here - there
    if lost:
        print(f"  in neither: {len(lost)} outputs (a build makes their steps again)")
    print(f"the remote cache holds {len(remote_keys)} steps and {len(remote_objects)} objects "
          f"({human_bytes(sum(remote_objects.values()))}) in all")
    return 0


def _digests(actions: Any) -> set[str]:
    out = set()
    for a in actions.values():
        outputs = a.outputs if hasattr(a, "outputs") else a["outputs"]
        out |= {o["digest"] for o in outputs if isinstance(o, dict) and "digest" in o}
    return out


def _named(keys: list[str], names: dict) -> str:
    if not keys:
        return ""
    shown = sorted(names.get(k, k[:12]) for k in keys)
    more = f" and {len(shown) - SHOW} more" if len(shown) > SHOW else ""
    return ": " + ", ".join(shown[:SHOW]) + more


# --- push -------------------------------------------------------------------------------------


def _push(args: argparse.Namespace) -> int:
    return _run(args, _do_push)


def _do_push(p: _Project, shared: Any) -> int:
    from .engine.gc import paid
    from .engine.remotecache import writes

    if not writes(p.cache):
        return fail(f"this client is read-only (`[cache] write = false`, or "
                    f"FILMC_CACHE_WRITE=0): it does not write to {p.cache.remote}",
                    "push from a client that writes (CI, or one with FILMC_CACHE_WRITE=1)")
    if shared is None:
        print("nothing stored yet: nothing to push", file=sys.stderr)
        return 0
    remote, store = shared.remote, shared.store
    local = store.get_actions(p.keys)
    there = remote.action_keys()
    have = set(remote.objects())
    todo = []
    for key, a in local.items():
        lacking = [o for o in a.outputs if o["digest"] not in have]
        if key not in there or lacking:
            todo.append(a)
    todo.sort(key=lambda a: (not paid(a.meta), a.meta.get("step", a.key)))  # paid first
    skipped = []
    pushed = 0
    for a in todo:
        absent = [o["digest"] for o in a.outputs if o["digest"] not in have
                  and not store.objects.ok(o["digest"])]
        if absent:
            skipped.append(a.meta.get("step", a.key[:12]))
            continue
        meta = {k: v for k, v in a.meta.items() if k != "shared"}
        if shared.upload_now(a.key, list(a.outputs), meta):
            pushed += 1
            have |= {o["digest"] for o in a.outputs}
    pins = 0
    for d in sorted(p.pins - have):
        if store.objects.ok(d):
            try:
                shared.moved = attrs.evolve(shared.moved, up_objects=shared.moved.up_objects + 1,
                                            up_bytes=shared.moved.up_bytes
                                            + remote.put_object(d, store.objects.path(d)))
                pins += 1
            except Exception as e:  # RemoteError, OSError: said, and the rest goes on
                shared.failed.append(f"pinned output {d}: {getattr(e, 'message', None) or e}")
    m = shared.moved
    print(f"pushed {pushed} steps and {m.up_objects} objects ({human_bytes(m.up_bytes)}) to "
          f"{remote.url}" + (f", {pins} of them outputs film.lock pins" if pins else "")
          + f"; {len(local) - len(todo)} steps were there already", file=sys.stderr)
    if skipped:
        print(f"  not pushed, their outputs are in neither store: {len(skipped)} steps"
              + _named(skipped, {}), file=sys.stderr)
    for f in shared.failed:
        print(f"error: cannot push {f}", file=sys.stderr)
    return 1 if shared.failed else 0


# --- pull -------------------------------------------------------------------------------------


def _pull(args: argparse.Namespace) -> int:
    return _run(args, _do_pull, create=True)


def _do_pull(p: _Project, shared: Any) -> int:
    store = shared.store
    local = store.get_actions(p.keys)
    local.update(shared.lookup(p.keys - set(local)))
    wanted = _digests(local) | p.pins
    problems = shared.ensure(sorted(wanted))
    for n in shared.notes:
        print(f"note: {n}", file=sys.stderr)
    m = shared.moved
    print(f"pulled {m.hits} steps and {m.down_objects} objects ({human_bytes(m.down_bytes)}) "
          f"from {shared.remote.url}; the local store holds {len(local)} of the "
          f"{len(p.keys)} steps this project needs", file=sys.stderr)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0

