"""`filmc.toml`: which backend serves each step kind, and how each backend is set up.

The file lives in the project folder (the nearest folder above the main film that
holds one, see `lang.loader.find_root`).  It is optional: with no file every step
kind is served by the built-in `local` backend, which costs nothing.

    config = load_config(root, diags, sources)   # never raises for bad input
    backend = config.backend_for("clip", shot_override)
    config.estimate("clip", backend.name, seconds=4.0)
    config.key_settings(backend.name)            # what may enter a content key
    secret(backend, "api_key")                   # read from the environment, at use

Layout (every key is described in docs/config.md):

    [steps]             step kind = backend name          (default: "local")
    [backends.NAME]     type, concurrency, prices, SETTING_env, other adapter settings
    [build]             concurrency, currency, store, cluster (a Dask scheduler's address),
                        exports (the formats a whole build writes)
    [gc]                keep_commits
    [cache]             remote, write, lease, endpoint_env (a shared cache: docs/team.md)
    [sound]             loudness (the film's mix, LUFS)

Secrets never live in the file, nor in a `Config`: a backend names the
environment variable that holds each one (`api_key_env = "FAL_KEY"`) and
`secret()` reads it at the moment of use.  Errors are diagnostics F05xx with a
span into filmc.toml; tomllib gives no positions, so `tomlpos` finds them in the text.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeGuard

import attrs

from ..lang.ast import Span
from ..lang.diagnostics import Diagnostics, Sources, did_you_mean, edit_distance
from ..lang.loader import display_path
from ..lang.steps import ASSIGNABLE as STEP_KINDS
from ..lang.tree import current as current_tree
from .sound import DEFAULT_LOUDNESS
from .tomlpos import error_message, error_span, line_col, scan_positions

CONFIG_FILE = "filmc.toml"
LOCAL = "local"
DEFAULT_BUILD_CONCURRENCY = 64  # jobs in flight at services, over all backends
DEFAULT_BACKEND_CONCURRENCY = 4
DEFAULT_CURRENCY = "USD"

TOP_LEVEL = ("steps", "backends", "build", "gc", "sound", "cache")
SOUND_KEYS = ("loudness",)
LOUDNESS_RANGE = (-40.0, -5.0)  # LUFS: from quiet cinema stems to the loudest streaming
BUILD_KEYS = ("concurrency", "currency", "store", "cluster", "exports")
GC_KEYS = ("keep_commits",)
CACHE_KEYS = ("remote", "write", "lease", "endpoint_env")
DEFAULT_LEASE = 300.0  # seconds a claim on a paid job lasts unless renewed (docs/team.md)
DEFAULT_ENDPOINT_ENV = "FILMC_S3_ENDPOINT"  # an S3-compatible server other than AWS
_LEASE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)\Z")
DEFAULT_KEEP_COMMITS = 10  # `filmc gc` keeps what this many latest commits need
ANY_KIND = "*"  # `fallback = "runway"`: for every step kind both backends make
BACKEND_KEYS = ("type", "concurrency", "rate", "prices", "fallback")  # reserved; the rest: settings
PRICE_KEYS = ("per_output", "per_second")

# Settings that never change what a backend produces, so never enter a content key:
# where and how fast to ask, not what to ask for.  Exact names only: a suffix rule
# would also drop `lora_url`, which does change the output.  A setting missing here
# costs a needless re-run; one wrongly listed here would reuse a stale output.
NON_KEY_SETTINGS = frozenset({
    "concurrency", "max_concurrency",
    "timeout", "timeout_s", "request_timeout", "connect_timeout", "read_timeout", "deadline",
    "deadline_s",
    "poll_interval", "poll_interval_s", "poll_every",
    "retries", "max_retries", "backoff", "backoff_s", "backoff_cap_s",
    "host", "port", "url", "base_url", "api_base", "endpoint", "server", "proxy", "region",
    "webhook", "webhook_url", "verify_tls", "user_agent", "client_id",
    "output_dir", "download_dir", "keep_remote", "log_level", "verbose",
    "organization", "project",  # who pays for a request, not what it makes
})

# Words that make a setting look like a secret: `api_key`, `auth_token`, `password`...
SECRET_WORDS = frozenset({"key", "keys", "apikey", "token", "tokens", "secret", "secrets",
                          "password", "passwords", "passwd", "credential", "credentials",
                          "authorization", "bearer"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ConfigError(Exception):
    """A configuration problem found at the moment of use (no span to point at)."""


# --- the configuration ------------------------------------------------------------------


@attrs.frozen
class Price:
    """A price in the project's currency: per output, plus per second of output."""

    per_output: float = 0.0
    per_second: float | None = None

    def estimate(self, seconds: float | None) -> float | None:
        if self.per_second is None:
            return self.per_output
        if seconds is None:
            return None
        return self.per_output + self.per_second * seconds


@attrs.frozen
class BackendConfig:
    """One `[backends.NAME]` table.  Holds names of environment variables, never secrets."""

    name: str
    type: str
    concurrency: int = DEFAULT_BACKEND_CONCURRENCY
    settings: dict = attrs.field(factory=dict, hash=False)  # adapter settings, no secrets
    secret_envs: dict = attrs.field(factory=dict, hash=False)  # setting -> env var name
    prices: dict = attrs.field(factory=dict, hash=False)  # step kind -> Price
    rate: float | None = None  # requests a second to the service; None: no limit
    # step kind (or ANY_KIND) → the backend that makes a step this one refuses
    fallback: dict = attrs.field(factory=dict, hash=False)

    def fallback_for(self, kind: str) -> str | None:
        return self.fallback.get(kind) or self.fallback.get(ANY_KIND)


@attrs.frozen
class CacheConfig:
    """`[cache]`: where the team's shared cache lives and whether this client writes it.
    Holds no credential: S3's come from the environment (AWS_*), as boto3 reads them."""

    remote: str  # "s3://bucket/prefix", "file:///shared/folder" or "/shared/folder"
    write: bool = True  # false: a read-only client (it never uploads, never claims)
    lease: float = DEFAULT_LEASE  # seconds a claim on a paid job lives without renewal
    endpoint_env: str = DEFAULT_ENDPOINT_ENV  # the variable naming an S3 endpoint URL


def _local(concurrency: int = DEFAULT_BACKEND_CONCURRENCY, settings: dict | None = None,
           prices: Mapping[str, Price] | None = None) -> BackendConfig:
    free = {kind: Price(0.0) for kind in STEP_KINDS}
    return BackendConfig(LOCAL, LOCAL, concurrency, dict(settings or {}), {},
                         {**free, **(prices or {})})


@attrs.frozen
class Config:
    path: Path | None = None  # the filmc.toml read; None: there was none
    steps: dict = attrs.field(factory=lambda: dict.fromkeys(STEP_KINDS, LOCAL), hash=False)
    backends: dict = attrs.field(factory=lambda: {LOCAL: _local()}, hash=False)
    concurrency: int = DEFAULT_BUILD_CONCURRENCY
    currency: str = DEFAULT_CURRENCY
    store: str | None = None  # where the build store lives (default: .filmc in the project)
    locate: Locator | None = attrs.field(default=None, eq=False, repr=False)  # key → Span
    keep_commits: int = DEFAULT_KEEP_COMMITS  # [gc] keep_commits
    loudness: float = DEFAULT_LOUDNESS  # [sound] loudness: the film's mix, LUFS (EBU R128)
    cache: CacheConfig | None = None  # [cache]: a remote cache shared by a team; None: none
    cluster: str | None = None  # [build] cluster: a Dask scheduler for the local renders
    exports: tuple[str, ...] | None = None  # [build] exports: what a whole build writes (all)

    def backend_for(self, step_kind: str, override: str | None = None) -> BackendConfig:
        """The backend serving `step_kind`: the shot's `backend STEP NAME` if given,
        else `[steps]`.  An unknown name raises `ConfigError` (with a suggestion);
        `unknown_backend_help` gives the same hint for a diagnostic."""
        name = override if override is not None else self.steps.get(step_kind, LOCAL)
        backend = self.backends.get(name)
        if backend is None:
            hint = self.unknown_backend_help(name)
            raise ConfigError(f"no backend `{name}` in {CONFIG_FILE}" + (f": {hint}" if hint else ""))
        return backend

    def unknown_backend_help(self, name: str) -> str:
        return did_you_mean(name, self.backends) or (
            f"configured backends: {', '.join(f'`{b}`' for b in sorted(self.backends))}; "
            f"add a `[backends.{name}]` table to {CONFIG_FILE}")

    def backend(self, name: str) -> BackendConfig:
        """The backend called `name`; ConfigError when there is none."""
        return self.backend_for("", name)

    def estimate(self, step_kind: str, backend_name: str,
                 seconds: float | None = None) -> float | None:
        """The estimated price of one output, or None when the price table has no entry
        (or prices per second and `seconds` is None)."""
        price = self.backend(backend_name).prices.get(step_kind)
        return None if price is None else price.estimate(seconds)

    def key_settings(self, backend_name: str) -> dict:
        """The settings that change a backend's output, for content keys: `settings`
        without NON_KEY_SETTINGS.  Never secrets, hosts or concurrency.  A key should
        also hold the backend's `type` (not its name, which is only a label)."""
        settings = self.backend(backend_name).settings
        return {k: copy.deepcopy(settings[k]) for k in sorted(settings)
                if k not in NON_KEY_SETTINGS}


def secret(backend: BackendConfig, setting: str, environ: Mapping[str, str] | None = None) -> str:
    """The secret `setting` of `backend` (e.g. "api_key"), read from its environment
    variable now.  Raises ConfigError naming the variable (never a value) when unset."""
    env = backend.secret_envs.get(setting)
    if env is None:
        raise ConfigError(f"backend `{backend.name}` needs `{setting}_env` in {CONFIG_FILE}: "
                          f"the name of the environment variable that holds its {setting}")
    value = (os.environ if environ is None else environ).get(env, "")
    if not value:
        raise ConfigError(f"backend `{backend.name}` needs its {setting}: "
                          f"set the environment variable `{env}`")
    return value


# --- loading --------------------------------------------------------------------------


def load_config(root: Path, diags: Diagnostics, sources: Sources | None = None, *,
                installed: Iterable[str] | None = None) -> Config:
    """Read `root/filmc.toml`; the defaults when there is none.  Problems go to `diags`
    (the returned Config then keeps what was valid); the text goes to `sources`, with
    any secret written in it masked, so that diagnostics render with their lines.
    `installed`: the adapter types a backend may have (default: the installed ones)."""
    if installed is None:
        from ..backends.registry import installed as installed_adapters

        installed = installed_adapters()
    path = root / CONFIG_FILE
    tree = current_tree()
    if not tree.is_file(path):
        return Config()
    file = display_path(path)
    try:
        text = tree.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        diags.error("F0501", f"cannot read `{file}`: {e}", Span(file, 1, 1, 1, 1))
        return Config(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        if sources is not None:
            sources.add(file, text)
        diags.error("F0501", error_message(str(e)), error_span(file, text, str(e)),
                    "invalid TOML here")
        return Config(path)
    checker = _Checker(file, text, diags, frozenset(installed))
    config = checker.config(path, data)
    if sources is not None:
        sources.add(file, checker.masked_text())
    return config


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> TypeGuard[int | float]:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _looks_secret(name: str) -> bool:
    return any(w in SECRET_WORDS for w in re.split(r"[_\-.]", name.lower()))


@attrs.frozen(eq=False)
class Locator:
    """Finds where a key of filmc.toml is written, for diagnostics found after loading."""

    file: str
    text: str = attrs.field(repr=False)
    pos: dict = attrs.field(repr=False)

    def span(self, path: tuple, value: bool = False) -> Span:
        """Where `path` is written: its value (or key), else its nearest written parent;
        line 1 when none is found."""
        candidates = [(*path, "=")] if value else []
        candidates += [path[:i] for i in range(len(path), 0, -1)]
        for found in (self.pos.get(c) for c in candidates):
            if found is not None:
                line, col, end_col = line_col(self.text, found[0], found[1])
                return Span(self.file, line, col, line, end_col)
        return Span(self.file, 1, 1, 1, 1)


class _Checker:
    def __init__(self, file: str, text: str, diags: Diagnostics, installed: frozenset) -> None:
        self.file, self.text, self.diags, self.installed = file, text, diags, installed
        self.locate = Locator(file, text, scan_positions(text))
        self.pos = self.locate.pos
        self.masks: list[tuple[int, int]] = []  # text offsets of secret values to hide

    def span(self, path: tuple, value: bool = False) -> Span:
        return self.locate.span(path, value)

    def error(self, code: str, msg: str, path: tuple, label: str = "", *, value: bool = False,
              help: str | None = None) -> None:
        self.diags.error(code, msg, self.span(path, value), label, help=help)

    def unknown(self, what: str, path: tuple, known: Iterable[str], help: str | None = None) -> None:
        known = tuple(known)
        self.error("F0502", f"unknown {what} `{path[-1]}`", path, f"not a known {what}",
                   help=did_you_mean(path[-1], known) or help
                   or f"known: {', '.join(f'`{k}`' for k in known)}")

    def table(self, data: dict, key: str, path: tuple) -> dict:
        value = data.get(key, {})
        if isinstance(value, dict):
            return value
        self.error("F0505", f"`{'.'.join((*path, key))}` must be a table", (*path, key),
                   value=True, help=f"write `[{'.'.join((*path, key))}]` and its keys below it")
        return {}

    # -- the file, table by table --

    def config(self, path: Path, data: dict) -> Config:
        for key in data:
            if key not in TOP_LEVEL:
                self.unknown("table", (key,), TOP_LEVEL,
                             help="put it under `[build]`" if key in BUILD_KEYS else None)
        backends = self.backends(self.table(data, "backends", ()))
        steps = self.steps(self.table(data, "steps", ()), backends)
        build = self.table(data, "build", ())
        concurrency, currency = self.build(build)
        store = build.get("store")
        if store is not None and not (isinstance(store, str) and store.strip()):
            self.error("F0505", "`store` must be a folder path", ("build", "store"), value=True,
                       help='write `store = "/big/disk/filmc-store"`, or leave it out')
            store = None
        cluster = build.get("cluster")
        if cluster is not None and not (isinstance(cluster, str) and cluster.strip()
                                        and not any(c.isspace() for c in cluster.strip())):
            self.error("F0505", "`cluster` must be a Dask scheduler's address",
                       ("build", "cluster"), f"found {_show(cluster)}", value=True,
                       help='write `cluster = "tcp://render-1:8786"`, or leave it out to '
                            'render on this machine')
            cluster = None
        exports = self.exports(build)
        keep_commits = self.gc(self.table(data, "gc", ()))
        loudness = self.sound(self.table(data, "sound", ()))
        cache = self.cache(self.table(data, "cache", ()))
        return Config(path, steps, backends, concurrency, currency, store, self.locate,
                      keep_commits, loudness, cache, cluster.strip() if cluster else None,
                      exports)

    def exports(self, build: dict) -> tuple[str, ...] | None:
        """`[build] exports = ["otio", "srt"]`: the exports a whole build writes (every
        format when absent); the others are made by `filmc export --format F` alone."""
        from .exports import FORMATS

        value = build.get("exports")
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error("F0505", "`exports` must be a list of export formats",
                       ("build", "exports"), f"found {_show(value)}", value=True,
                       help=f'write `exports = ["otio", "srt"]`; the formats are '
                            f'{", ".join(f"`{f}`" for f in FORMATS)}')
            return None
        for v in value:
            if v not in FORMATS:
                self.error("F0502", f"unknown export format `{v}`", ("build", "exports"),
                           "not an export format", value=True,
                           help=did_you_mean(v, FORMATS)
                           or f"the formats are {', '.join(f'`{f}`' for f in FORMATS)}")
        return tuple(v for v in value if v in FORMATS)

    def cache(self, cache: dict) -> CacheConfig | None:
        for key in cache:
            if key not in CACHE_KEYS:
                self.unknown("key", ("cache", key), CACHE_KEYS)
        remote = cache.get("remote")
        if remote is None:
            return None
        if not (isinstance(remote, str) and remote.strip()) or \
                (remote.startswith("s3://") and not remote[5:].split("/")[0]):
            self.error("F0505", "`remote` must be an `s3://bucket/prefix` URL or a folder",
                       ("cache", "remote"), f"found {_show(remote)}", value=True,
                       help='write `remote = "s3://studio-films/wolfpack"` or '
                            '`remote = "/mnt/shared/filmc-cache"`')
            return None
        write = cache.get("write", True)
        if not isinstance(write, bool):
            self.error("F0506", "`write` must be true or false", ("cache", "write"),
                       f"found {_show(write)}", value=True,
                       help="`write = false` makes this a read-only client: it reads the "
                            "shared cache and never uploads")
            write = True
        lease = cache.get("lease", DEFAULT_LEASE)
        seconds = _lease_seconds(lease)
        if seconds is None:
            self.error("F0506", "`lease` must be a duration such as \"5m\", \"90s\" or a "
                       "number of seconds", ("cache", "lease"), f"found {_show(lease)}",
                       value=True, help="how long a claim on a paid job lasts when its "
                                        "holder stops renewing it (it died), e.g. `lease = \"5m\"`")
            seconds = DEFAULT_LEASE
        env = cache.get("endpoint_env", DEFAULT_ENDPOINT_ENV)
        if not (isinstance(env, str) and _ENV_NAME.match(env)):
            self.error("F0506", "`endpoint_env` must name an environment variable",
                       ("cache", "endpoint_env"), f"found {_show(env)}", value=True,
                       help='the variable that holds an S3 endpoint URL, e.g. '
                            '`endpoint_env = "MINIO_URL"`')
            env = DEFAULT_ENDPOINT_ENV
        return CacheConfig(remote.strip(), write, seconds, env)

    def sound(self, sound: dict) -> float:
        for key in sound:
            if key not in SOUND_KEYS:
                self.unknown("key", ("sound", key), SOUND_KEYS)
        value = sound.get("loudness", DEFAULT_LOUDNESS)
        lo, hi = LOUDNESS_RANGE
        if isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi:
            return float(value)
        self.error("F0506", f"`loudness` must be a number of LUFS from {lo:g} to {hi:g}",
                   ("sound", "loudness"), f"found {_show(value)}", value=True,
                   help="the film's integrated loudness (EBU R128): `loudness = -23` for "
                        "broadcast, `-14` for streaming services")
        return DEFAULT_LOUDNESS

    def gc(self, gc: dict) -> int:
        for key in gc:
            if key not in GC_KEYS:
                self.unknown("key", ("gc", key), GC_KEYS)
        value = gc.get("keep_commits", DEFAULT_KEEP_COMMITS)
        if _is_int(value) and value >= 0:
            return value
        self.error("F0506", "`keep_commits` must be a whole number, zero or more",
                   ("gc", "keep_commits"), f"found {_show(value)}", value=True,
                   help="how many of the latest commits `filmc gc` keeps what they need, "
                        "e.g. `keep_commits = 20` (0: the working tree only)")
        return DEFAULT_KEEP_COMMITS

    def build(self, build: dict) -> tuple[int, str]:
        for key in build:
            if key not in BUILD_KEYS:
                self.unknown("key", ("build", key), BUILD_KEYS)
        concurrency = self.concurrency(build, ("build",), DEFAULT_BUILD_CONCURRENCY)
        currency = build.get("currency", DEFAULT_CURRENCY)
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{1,12}", currency)):
            self.error("F0505", "`currency` must be a currency code, such as \"USD\"",
                       ("build", "currency"), value=True,
                       help="prices are plain numbers in this currency")
            currency = DEFAULT_CURRENCY
        return concurrency, currency

    def concurrency(self, table: dict, path: tuple, default: int) -> int:
        value = table.get("concurrency", default)
        if _is_int(value) and value > 0:
            return value
        self.error("F0506", "`concurrency` must be a positive whole number",
                   (*path, "concurrency"), f"found {_show(value)}", value=True,
                   help="the most steps run at once, e.g. `concurrency = 4`")
        return default

    def steps(self, table: dict, backends: Mapping[str, BackendConfig]) -> dict[str, str]:
        steps = dict.fromkeys(STEP_KINDS, LOCAL)
        for kind, name in table.items():
            path = ("steps", kind)
            if kind not in STEP_KINDS:
                self.error("F0503", f"unknown step kind `{kind}`", path, "not a step kind",
                           help=did_you_mean(kind, STEP_KINDS)
                           or f"step kinds: {', '.join(f'`{k}`' for k in STEP_KINDS)}")
            elif not isinstance(name, str):
                self.error("F0505", f"`steps.{kind}` must be a backend name, in quotes", path,
                           value=True, help=f"e.g. `{kind} = \"{LOCAL}\"`")
            elif name not in backends:
                self.error("F0504", f"no backend `{name}` for step `{kind}`", path,
                           "not configured", value=True,
                           help=did_you_mean(name, backends)
                           or f"add a `[backends.{name}]` table, or use one of: "
                              + ", ".join(f"`{b}`" for b in sorted(backends)))
            else:
                steps[kind] = name
        return steps

    def backends(self, table: dict) -> dict[str, BackendConfig]:
        out = {LOCAL: _local()}
        for name, body in table.items():
            path = ("backends", name)
            if not isinstance(body, dict):
                self.error("F0505", f"`backends.{name}` must be a table", path, value=True,
                           help=f"write `[backends.{name}]` and its settings below it")
                continue
            backend = self.backend(name, body, path)
            if backend is not None:
                out[name] = backend
        for name, backend in out.items():
            for kind, other in backend.fallback.items():
                where = ("backends", name, "fallback") + (() if kind == ANY_KIND else (kind,))
                if other not in out:
                    self.error("F0504", f"no backend `{other}` to fall back to", where,
                               "not configured", value=True,
                               help=did_you_mean(other, out)
                               or f"add a `[backends.{other}]` table, or use one of: "
                                  + ", ".join(f"`{b}`" for b in sorted(out) if b != name))
                elif other == name:
                    self.error("F0505", f"`{name}` cannot fall back to itself", where,
                               value=True, help="name another backend, or remove the line")
        return out

    def backend(self, name: str, body: dict, path: tuple) -> BackendConfig | None:
        kind = body.get("type", name)
        if not (isinstance(kind, str) and kind):
            self.error("F0505", "`type` must be an adapter name, in quotes", (*path, "type"),
                       value=True, help=f"e.g. `type = \"{name}\"`")
            return None
        if name == LOCAL and kind != LOCAL:
            self.error("F0505", "the built-in `local` backend cannot change its type",
                       (*path, "type"), value=True,
                       help="give the other backend its own name, e.g. `[backends.mine]`")
            return None
        if kind not in self.installed and ":" not in kind:
            from ..backends.registry import HOW_TO_GET

            where = (*path, "type") if "type" in body else path
            installed = ", ".join(f"`{t}`" for t in sorted(self.installed)) or "none"
            self.error("F0510", f"no backend adapter of type `{kind}` is installed", where,
                       "no such adapter", value=True,
                       help=did_you_mean(kind, sorted(self.installed))
                       or f"installed: {installed}; {HOW_TO_GET}")
            return None
        concurrency = self.concurrency(body, path, DEFAULT_BACKEND_CONCURRENCY)
        rate = self.rate(body, path)
        prices = self.prices(self.table(body, "prices", path), (*path, "prices"))
        settings, envs = {}, {}
        for key, value in body.items():
            if key in BACKEND_KEYS:
                continue
            if key.endswith("_env") and len(key) > 4:
                if isinstance(value, str) and _ENV_NAME.match(value):
                    envs[key[:-4]] = value
                else:
                    self.error("F0509", f"`{key}` must name an environment variable",
                               (*path, key), f"found {_show(value)}", value=True,
                               help="letters, digits and `_`, not starting with a digit, "
                                    "e.g. `FAL_KEY`")
            elif self.secret_free(value, (*path, key)):
                typo = [k for k in BACKEND_KEYS if edit_distance(key.lower(), k, 1) <= 1]
                if typo:  # `concurency`: a typo of a reserved key, not a setting
                    self.error("F0502", f"unknown key `{key}` in `[backends.{name}]`",
                               (*path, key), "not a known key",
                               help=f"did you mean `{typo[0]}`?")
                else:
                    settings[key] = value
        if name == LOCAL:
            return _local(concurrency, settings, prices)
        fallback = self.fallback(body.get("fallback"), (*path, "fallback"))
        return BackendConfig(name, kind, concurrency, settings, envs, prices, rate, fallback)

    def fallback(self, value: object, path: tuple) -> dict[str, str]:
        """`fallback = "runway"` (every step kind it makes) or `{ clip = "runway" }`: which
        backend makes a step this one refuses (checked against the backends once all are
        read, in `fallbacks`)."""
        if value is None:
            return {}
        if isinstance(value, str) and value:
            return {ANY_KIND: value}
        if isinstance(value, dict):
            out = {}
            for kind, name in value.items():
                if kind not in STEP_KINDS:
                    self.error("F0503", f"unknown step kind `{kind}`", (*path, kind),
                               help=did_you_mean(kind, STEP_KINDS)
                               or f"step kinds: {', '.join(STEP_KINDS)}")
                elif not (isinstance(name, str) and name):
                    self.error("F0505", "a fallback is a backend's name, in quotes",
                               (*path, kind), value=True, help=f'e.g. `{kind} = "runway"`')
                else:
                    out[kind] = name
            return out
        self.error("F0505", "`fallback` must be a backend's name or a table of step kinds",
                   path, value=True,
                   help='`fallback = "runway"`, or `fallback = { clip = "runway" }`')
        return {}

    def rate(self, body: dict, path: tuple) -> float | None:
        value = body.get("rate")
        if value is None:
            return None
        if _is_number(value) and value > 0:
            return float(value)
        self.error("F0506", "`rate` must be a positive number of requests a second",
                   (*path, "rate"), f"found {_show(value)}", value=True,
                   help="e.g. `rate = 10`, or leave it out for no limit")
        return None

    def secret_free(self, value: object, path: tuple) -> bool:
        """False (and an error) when a secret-looking setting holds a literal string."""
        if isinstance(value, dict):
            return all([self.secret_free(v, (*path, k)) for k, v in value.items()])
        strings = value if isinstance(value, list) else [value]
        if not (_looks_secret(path[-1]) and any(isinstance(v, str) and v for v in strings)):
            return True
        setting = path[-1]
        self.error("F0508", "secrets never go in filmc.toml: put it in an environment variable "
                            f"and name it with `{setting}_env`", path, "a secret written here",
                   help=f"replace it with `{setting}_env = \"{_env_suggestion(path)}\"` and "
                        f"`export {_env_suggestion(path)}=...` in your shell")
        found = self.pos.get((*path, "="))
        if found is not None:
            self.masks.append(found)
        return False

    def prices(self, table: dict, path: tuple) -> dict[str, Price]:
        prices = {}
        for kind, value in table.items():
            where = (*path, kind)
            if kind not in STEP_KINDS:
                self.error("F0503", f"unknown step kind `{kind}` in prices", where,
                           "not a step kind", help=did_you_mean(kind, STEP_KINDS)
                           or f"step kinds: {', '.join(f'`{k}`' for k in STEP_KINDS)}")
                continue
            price = self.price(value, where)
            if price is not None:
                prices[kind] = price
        return prices

    def price(self, value: object, path: tuple) -> Price | None:
        help = (f"a price per output (`{path[-1]} = 0.04`) or per second of output "
                f"(`{path[-1]} = {{ per_second = 0.07 }}`), zero or more")
        if _is_number(value) and value >= 0:
            return Price(float(value))
        if isinstance(value, dict) and value:
            ok = True
            for key, v in value.items():
                if key not in PRICE_KEYS:
                    self.unknown("price field", (*path, key), PRICE_KEYS)
                    ok = False
                elif not (_is_number(v) and v >= 0):
                    self.error("F0507", f"`{key}` must be a number, zero or more", (*path, key),
                               f"found {_show(v)}", value=True, help=help)
                    ok = False
            if not ok:
                return None
            per_second = value.get("per_second")
            return Price(float(value.get("per_output", 0.0)),
                         None if per_second is None else float(per_second))
        self.error("F0507", f"bad price for `{path[-1]}`", path, f"found {_show(value)}",
                   value=True, help=help)
        return None

    def masked_text(self) -> str:
        """The text with every literal secret starred out (line breaks and quotes kept,
        so positions hold), for rendering diagnostics without leaking the secret."""
        chars = list(self.text)
        for start, end in self.masks:
            for i in range(start, end):
                if chars[i] not in "\r\n\"'[],":
                    chars[i] = "*"
        return "".join(chars)


def _env_suggestion(path: tuple) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{path[1]}_{path[-1]}").upper()
    return name if _ENV_NAME.match(name) else "SECRET_" + name


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"\"{value}\""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _lease_seconds(value: object) -> float | None:
    """`"5m"`, `"90s"`, `"500ms"`, `"1h"` or a number of seconds → seconds (> 0)."""
    if _is_number(value) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        m = _LEASE.match(value.strip())
        if m:
            n = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
            return n if n > 0 else None
    return None
