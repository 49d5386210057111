"""What adapters check the same way in their filmc.toml tables, and where a service is.

    problem = Problems()
    problem.strings(settings, ("model", "base_url"))  # `model` must be a non-empty string
    problem.region(settings, REGIONS, "a MiniMax region")  # and `base_url` an http(s) URL
    problem.near_misses(settings, KNOWN, "minimax")  # did you mean `resolution`?
    return problem

Each problem is a `SettingProblem` shown at its line of filmc.toml; a setting that
looks like a misspelt one the adapter knows is a warning, since another version of
filmc may know it.  `ENGINE` are the settings the engine reads from every backend's
table (engine/retry.py): an adapter knows them, so as not to call them misspellings.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .protocol import SettingProblem

ENGINE = ("retries", "backoff_s", "backoff_cap_s", "poll_interval_s", "timeout_s")


class Problems(list[SettingProblem]):
    """The problems found in a backend's settings, in the order they were found."""

    def __call__(self, setting: str, message: str, help: str | None = None,
                 warning: bool = False) -> None:
        self.append(SettingProblem(setting, message, help, warning))

    def strings(self, settings: Mapping[str, Any], names: Iterable[str]) -> None:
        """Each of `names` that is set must be a non-empty string."""
        for name in names:
            if name in settings and (not isinstance(settings[name], str) or not settings[name]):
                self(name, f"`{name}` must be a non-empty string")

    def flags(self, settings: Mapping[str, Any], names: Iterable[str]) -> None:
        """Each of `names` that is set must be `true` or `false`."""
        for name in names:
            if name in settings and not isinstance(settings[name], bool):
                self(name, f"`{name}` must be `true` or `false`")

    def http_url(self, settings: Mapping[str, Any], name: str, help: str) -> None:
        """`name`, when it is a non-empty string, must be an http(s) URL."""
        value = settings.get(name)
        if isinstance(value, str) and value and not re.match(r"https?://[^/]", value):
            self(name, f"`{name}` must be an http(s) URL, not `{value}`", help)

    def one_of(self, settings: Mapping[str, Any], name: str, allowed: Sequence[str],
               service: str) -> None:
        """`name`, when set, must be one of `allowed`: the values `service` makes."""
        if name in settings and settings[name] not in allowed:
            self(name, f"`{name}` = `{settings[name]}` is not one {service} makes",
                 "it is " + ", ".join(f"`{a}`" for a in allowed))

    def durations(self, settings: Mapping[str, Any], help: str) -> None:
        """`durations`, when set, must list clip lengths in whole seconds (`seconds`)."""
        if settings.get("durations") is not None and seconds(settings["durations"]) is None:
            self("durations", "`durations` must be a list of whole seconds", help)

    def region(self, settings: Mapping[str, Any], regions: Iterable[str], what: str) -> None:
        """`region`, when set, must be one of `regions` (it is `what`, `an Ark region`);
        `base_url`, which stands for it, an http(s) URL."""
        listed = ", ".join(f"`{r}`" for r in regions)
        region = settings.get("region")
        if region is not None and region not in regions:
            self("region", f"`{region}` is not {what}", f"it is one of {listed}")
        self.http_url(settings, "base_url", f"leave it out and set `region` ({listed})")

    def near_misses(self, settings: Mapping[str, Any], known: Iterable[str],
                    adapter: str) -> None:
        """A warning for each setting that looks like a misspelt known one."""
        names = sorted(known)
        for name in settings:
            near = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
            if name not in names and near:
                self(name, f"the `{adapter}` adapter has no setting `{name}`",
                     f"did you mean `{near[0]}`?", warning=True)


def number(value: Any, low: float = -math.inf, high: float = math.inf,
           whole: bool = False) -> bool:
    """Whether `value` is a number (a whole one with `whole`; never a boolean) from `low`
    to `high`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (isinstance(value, int) or not whole) and low <= value <= high


def seconds(value: Any) -> tuple[int, ...] | None:
    """A `durations` setting as the lengths it lists (whole seconds from 1 to 60), sorted,
    each once; None when it is not such a list."""
    if isinstance(value, list) and value and all(number(d, 1, 60, whole=True) for d in value):
        return tuple(sorted(set(value)))
    return None


def service_url(settings: Mapping[str, Any], regions: Mapping[str, str], default: str) -> str:
    """Where the API lives: `base_url`, else the URL of `region` (else of `default`)."""
    given = settings.get("base_url")
    if isinstance(given, str) and given:
        return given.rstrip("/")
    return regions.get(str(settings.get("region") or default), regions[default])
