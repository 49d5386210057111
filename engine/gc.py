"""What `filmc gc` forgets, and why everything else stays.

    needs = roots.needs_of(graph, lock) | ...           # what the projects need
    plan = decide(store.inventory(), needs, Rules(...))
    forgotten, deleted = collect(store, plan, needs, since, dry_run)

A cached step is kept when a project needs it: the one collected (its working
tree as configured and offline, its film.lock, its last commits: the command
works that out) or any other project recorded in the store (engine/roots.py).
Of the rest, a step is still kept when it cost money (unless `include_paid`),
when a build used it after `since` (`--older-than`), or when it was made by a
project whose folder is gone (unless `drop_missing`).  A step made by a
project that left no record in the store (its record deleted, the store
copied or moved, or a filmc from before records), and not needed by anyone
recorded, is *unaccounted*: gc refuses to forget it unless forced, since what
that project needs is unknown.  In the project's own default store (`.filmc`
in its folder) such steps are the project's own: earlier filmc versions did
not name projects, and a copied project's store names the original.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .roots import Needs
from .store import Cached, Store

Owner = tuple[str, str]  # (project folder, film)


def paid(meta: Mapping[str, Any]) -> bool:
    """Whether making this step cost money: a cost above zero, or a service's step whose
    cost is unknown (no price, and the service said none).  Steps filmc recorded before it
    noted `remote` count as paid unless their backend was the built-in `local` one."""
    if meta.get("provided") or meta.get("pinned"):
        return False  # the user's own file, or a pick remembered under its key
    cost = meta.get("cost")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        return cost > 0
    remote = meta.get("remote")
    if isinstance(remote, bool):
        return remote
    return meta.get("type", "local") != "local" and meta.get("backend", "local") != "local"


def owner(meta: Mapping[str, Any]) -> Owner | None:
    project, film = meta.get("project"), meta.get("film")
    return (project, film) if isinstance(project, str) and isinstance(film, str) else None


@attrs.frozen
class Rules:
    own: Owner  # the project collected
    own_store: bool  # the store is that project's default `.filmc`
    recorded: frozenset[Owner] = frozenset()  # other projects with a readable record
    gone: frozenset[Owner] = frozenset()  # of those, the ones whose folder is gone
    include_paid: bool = False
    since: float | None = None  # keep what was recorded or used at or after this time
    drop_missing: bool = False  # forget what projects whose folder is gone made
    force: bool = False  # forget unaccounted steps too


@attrs.frozen
class Plan:
    forget: tuple[Cached, ...] = ()
    kept_paid: tuple[Cached, ...] = ()
    kept_recent: tuple[Cached, ...] = ()
    kept_gone: Mapping[Owner, tuple[Cached, ...]] = attrs.field(factory=dict)
    # Not needed by any recorded project, made by one with no record (None: named no
    # project, in a store shared with others): refused unless forced (then also in forget).
    unaccounted: Mapping[Owner | None, tuple[Cached, ...]] = attrs.field(factory=dict)


def decide(inventory: Iterable[Cached], needs: Needs, rules: Rules) -> Plan:
    forget: list[Cached] = []
    kept_paid: list[Cached] = []
    kept_recent: list[Cached] = []
    kept_gone: dict[Owner, list[Cached]] = {}
    unaccounted: dict[Owner | None, list[Cached]] = {}
    for c in inventory:
        if c.key in needs.keys:
            continue
        if not rules.include_paid and paid(c.meta):
            kept_paid.append(c)
            continue
        if rules.since is not None and c.used >= rules.since:
            kept_recent.append(c)
            continue
        who = owner(c.meta)
        if who is None or (who != rules.own and who not in rules.recorded):
            if rules.own_store:
                pass  # the project's own: made before filmc named projects, or in a copy
            elif who is None:
                unaccounted.setdefault(None, []).append(c)
                if not rules.force:
                    continue
            elif not os.path.isdir(who[0]):  # no record, and its folder is gone
                if not rules.drop_missing:
                    kept_gone.setdefault(who, []).append(c)
                    continue
            else:
                unaccounted.setdefault(who, []).append(c)
                if not rules.force:
                    continue
        elif who in rules.gone and not rules.drop_missing:
            kept_gone.setdefault(who, []).append(c)
            continue
        forget.append(c)
    return Plan(tuple(forget), tuple(kept_paid), tuple(kept_recent),
                {k: tuple(v) for k, v in kept_gone.items()},
                {k: tuple(v) for k, v in unaccounted.items()})


def collect(store: Store, plan: Plan, needs: Needs, since: float | None,
            dry_run: bool) -> tuple[list[str], list[tuple[str, int]]]:
    """Forget the plan's steps and delete the objects no remaining step names and no
    project pins (an object no step names is kept when newer than `since`): (forgotten
    keys, [(deleted digest, bytes)])."""
    return store.collect(needs.keys, dry_run=dry_run, pinned=needs.digests, since=since,
                         forget={c.key for c in plan.forget})


def own_store(root: Path, store: Path) -> bool:
    """Whether `store` is the project's own default store (`ROOT/.filmc`)."""
    return os.path.realpath(store) == os.path.realpath(root / ".filmc")
