"""filmc.toml: defaults, a full config, every error with its position, secrets kept out."""

from __future__ import annotations

from pathlib import Path

import pytest

from filmc.compiler.config import (
    LOCAL,
    Config,
    ConfigError,
    Price,
    load_config,
    secret,
)
from filmc.lang.diagnostics import Diagnostics, Sources, render_all
from filmc.lang.schema import STEP_KINDS

EXAMPLE = Path(__file__).parent.parent / "examples" / "wolfpack"
# These tests are about the file's format: they load it as if adapters of these types
# were installed (which ones are is checked against the real registry below).
TYPES = ("local", "comfyui", "openai", "fal", "kling", "replicate", "runway")

FULL = """\
[steps]
keyframe = "fal"
clip = "kling"

[backends.fal]
type = "fal"
api_key_env = "FAL_KEY"
concurrency = 8
model = "fal-ai/flux/dev"
guidance_scale = 3.5
base_url = "https://queue.fal.run"
timeout_s = 600
[backends.fal.prices]
keyframe = 0.025
clip = { per_second = 0.10 }

[backends.kling]
access_key_env = "KLING_ACCESS_KEY"
secret_key_env = "KLING_SECRET_KEY"
concurrency = 2
mode = "pro"
prices.clip = { per_output = 0.5, per_second = 0.07 }

[backends.local]
concurrency = 3

[build]
concurrency = 16
currency = "EUR"
"""


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None,
         sources: Sources | None = None) -> tuple[Config, Diagnostics]:
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / "filmc.toml").write_text(text, encoding="utf-8")
    diags = Diagnostics()
    return load_config(tmp_path, diags, sources, installed=TYPES), diags


def errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> list[tuple]:
    _, diags = load(tmp_path, monkeypatch, text)
    return [(d.code, f"{d.span}", d.message, d.help) for d in diags.sorted()]


# --- valid files ----------------------------------------------------------------------


def test_no_file_gives_the_defaults(tmp_path, monkeypatch):
    config, diags = load(tmp_path, monkeypatch, None)
    assert list(diags) == []
    assert config.path is None
    assert config.steps == dict.fromkeys(STEP_KINDS, LOCAL)
    assert list(config.backends) == [LOCAL]
    for kind in STEP_KINDS:
        backend = config.backend_for(kind, None)
        assert (backend.name, backend.type) == ("local", "local")
        assert config.estimate(kind, "local", 4.0) == 0.0
    assert config.key_settings("local") == {}
    assert (config.concurrency, config.currency) == (64, "USD")


def test_an_empty_file_is_the_defaults(tmp_path, monkeypatch):
    config, diags = load(tmp_path, monkeypatch, "# nothing yet\n")
    assert list(diags) == []
    assert config.steps == Config().steps
    assert config.backends == Config().backends


def test_a_full_config(tmp_path, monkeypatch):
    config, diags = load(tmp_path, monkeypatch, FULL)
    assert list(diags) == []
    assert config.steps["keyframe"] == "fal"
    assert config.steps["clip"] == "kling"
    assert config.steps["speech"] == "local"
    assert sorted(config.backends) == ["fal", "kling", "local"]
    fal = config.backends["fal"]
    assert (fal.name, fal.type, fal.concurrency) == ("fal", "fal", 8)
    assert fal.settings == {"model": "fal-ai/flux/dev", "guidance_scale": 3.5,
                            "base_url": "https://queue.fal.run", "timeout_s": 600}
    assert fal.secret_envs == {"api_key": "FAL_KEY"}
    assert fal.prices == {"keyframe": Price(0.025), "clip": Price(0.0, 0.10)}
    kling = config.backends["kling"]
    assert kling.type == "kling"  # the table's name when `type` is left out
    assert kling.secret_envs == {"access_key": "KLING_ACCESS_KEY",
                                 "secret_key": "KLING_SECRET_KEY"}
    assert config.backends["local"].concurrency == 3
    assert (config.concurrency, config.currency) == (16, "EUR")


def test_backend_for_follows_steps_and_the_shot_override(tmp_path, monkeypatch):
    config, _ = load(tmp_path, monkeypatch, FULL)
    assert config.backend_for("keyframe", None).name == "fal"
    assert config.backend_for("keyframe", "kling").name == "kling"
    assert config.backend_for("clip", "local").name == "local"
    assert config.backend_for("speech", None).name == "local"
    with pytest.raises(ConfigError) as e:
        config.backend_for("clip", "klign")
    assert str(e.value) == "no backend `klign` in filmc.toml: did you mean `kling`?"
    with pytest.raises(ConfigError) as e:
        config.backend_for("clip", "runway")
    assert str(e.value) == ("no backend `runway` in filmc.toml: configured backends: `fal`, "
                            "`kling`, `local`; add a `[backends.runway]` table to filmc.toml")


def test_estimate_per_output_and_per_second(tmp_path, monkeypatch):
    config, _ = load(tmp_path, monkeypatch, FULL)
    assert config.estimate("keyframe", "fal", None) == 0.025
    assert config.estimate("keyframe", "fal", 5.0) == 0.025
    assert config.estimate("clip", "fal", 4.0) == pytest.approx(0.40)
    assert config.estimate("clip", "fal", None) is None  # per second, length unknown
    assert config.estimate("clip", "kling", 5.0) == pytest.approx(0.5 + 0.35)
    assert config.estimate("speech", "fal", 2.0) is None  # no entry in the table
    assert config.estimate("clip", "local", 5.0) == 0.0


def test_key_settings_leave_out_hosts_timeouts_concurrency_and_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("FAL_KEY", "fal-sk-0123456789abcdef")
    config, _ = load(tmp_path, monkeypatch, FULL)
    assert config.key_settings("fal") == {"guidance_scale": 3.5, "model": "fal-ai/flux/dev"}
    assert config.key_settings("kling") == {"mode": "pro"}
    text = repr(config.key_settings("fal")) + repr(config.key_settings("kling"))
    for word in ("FAL_KEY", "KLING", "queue.fal.run", "600", "concurrency"):
        assert word not in text


def test_secrets_never_show_in_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("FAL_KEY", "fal-sk-0123456789abcdef")
    monkeypatch.setenv("KLING_SECRET_KEY", "kling-very-secret")
    config, _ = load(tmp_path, monkeypatch, FULL)
    for shown in (repr(config), str(config), repr(config.backends), str(config.backends["fal"])):
        assert "fal-sk-0123456789abcdef" not in shown
        assert "kling-very-secret" not in shown
    assert secret(config.backends["fal"], "api_key") == "fal-sk-0123456789abcdef"
    assert secret(config.backends["kling"], "secret_key") == "kling-very-secret"


def test_secret_names_the_missing_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("KLING_ACCESS_KEY", raising=False)
    config, _ = load(tmp_path, monkeypatch, FULL)
    with pytest.raises(ConfigError) as e:
        secret(config.backends["kling"], "access_key")
    assert str(e.value) == ("backend `kling` needs its access_key: "
                            "set the environment variable `KLING_ACCESS_KEY`")
    with pytest.raises(ConfigError) as e:
        secret(config.backends["fal"], "api_key", environ={"FAL_KEY": ""})
    assert "`FAL_KEY`" in str(e.value)
    with pytest.raises(ConfigError) as e:
        secret(config.backends["local"], "api_key")
    assert str(e.value) == ("backend `local` needs `api_key_env` in filmc.toml: "
                            "the name of the environment variable that holds its api_key")


def test_the_example_config_is_valid(monkeypatch):
    """Against the installed adapters: the example names only backends that exist."""
    monkeypatch.chdir(EXAMPLE)
    diags = Diagnostics()
    config = load_config(EXAMPLE, diags)
    assert [d.message for d in diags] == []
    assert config.steps == {**dict.fromkeys(STEP_KINDS, LOCAL), "keyframe": "openai",
                            "speech": "openai"}
    assert sorted(config.backends) == ["comfyui", "local", "openai"]
    assert config.estimate("keyframe", "openai", None) is not None
    for name in config.backends:
        assert "url" not in config.key_settings(name)
        assert "base_url" not in config.key_settings(name)


def test_a_type_with_no_installed_adapter_is_an_error(tmp_path, monkeypatch):
    """Against the real registry: `pika` has no adapter in this filmc."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "filmc.toml").write_text('[backends.pika]\napi_key_env = "K"\n\n'
                                         '[backends.comfy]\ntype = "comfyu"\n')
    diags = Diagnostics()
    config = load_config(tmp_path, diags)
    found = [(d.code, d.severity, f"{d.span}", d.message, d.help) for d in diags.sorted()]
    assert found[0][:4] == ("F0510", "error", "filmc.toml:1:11",
                            "no backend adapter of type `pika` is installed")
    assert "installed: `comfyui`, `elevenlabs`, `fal`, `flux`, `gemini_image`, `kling`, `local`, `minimax`, " \
           "`openai`, `replicate`, `runway`, `seedance`, `veo`" in found[0][4]
    assert "entry point" in found[0][4] and "--offline" in found[0][4]
    assert found[1][3:] == ("no backend adapter of type `comfyu` is installed",
                            "did you mean `comfyui`?")
    assert sorted(config.backends) == ["local"]


# --- errors, each with its position --------------------------------------------------


def test_toml_syntax_error_points_at_line_and_column(tmp_path, monkeypatch):
    assert errors(tmp_path, monkeypatch, '[steps]\nclip = \n') == [
        ("F0501", "filmc.toml:2:8", "invalid TOML: invalid value", None)]
    assert errors(tmp_path, monkeypatch, '[steps]\nclip = "kling\n') == [
        ("F0501", "filmc.toml:2:14", "invalid TOML: illegal character '\\n'", None)]


def test_unknown_tables_and_keys(tmp_path, monkeypatch):
    text = ('[backend.fal]\nmodel = "x"\n\n'
            '[build]\nconcurency = 2\n\n'
            '[backends.fal]\nconcurency = 2\nprices.clip = { per_secnd = 0.1 }\n'
            'concurrency = 4\n')
    assert errors(tmp_path, monkeypatch, text) == [
        ("F0502", "filmc.toml:1:2", "unknown table `backend`", "did you mean `backends`?"),
        ("F0502", "filmc.toml:5:1", "unknown key `concurency`", "did you mean `concurrency`?"),
        ("F0502", "filmc.toml:8:1", "unknown key `concurency` in `[backends.fal]`",
         "did you mean `concurrency`?"),
        ("F0502", "filmc.toml:9:17", "unknown price field `per_secnd`",
         "did you mean `per_second`?"),
    ]


def test_a_build_key_at_the_top_says_where_it_goes(tmp_path, monkeypatch):
    assert errors(tmp_path, monkeypatch, 'concurrency = 4\n') == [
        ("F0502", "filmc.toml:1:1", "unknown table `concurrency`", "put it under `[build]`")]


def test_unknown_step_kind(tmp_path, monkeypatch):
    text = '[steps]\nkeyframe = "local"\nclips = "local"\n\n[backends.fal.prices]\nkeyfrmae = 1\n'
    assert errors(tmp_path, monkeypatch, text) == [
        ("F0503", "filmc.toml:3:1", "unknown step kind `clips`", "did you mean `clip`?"),
        ("F0503", "filmc.toml:6:1", "unknown step kind `keyfrmae` in prices",
         "did you mean `keyframe`?"),
    ]


def test_steps_naming_a_backend_that_is_not_configured(tmp_path, monkeypatch):
    text = '[steps]\nclip = "klign"\nkeyframe = "fal"\n\n[backends.kling]\n'
    config, diags = load(tmp_path, monkeypatch, text)
    assert [(d.code, f"{d.span}", d.message, d.help) for d in diags.sorted()] == [
        ("F0504", "filmc.toml:2:8", "no backend `klign` for step `clip`",
         "did you mean `kling`?"),
        ("F0504", "filmc.toml:3:12", "no backend `fal` for step `keyframe`",
         "add a `[backends.fal]` table, or use one of: `kling`, `local`"),
    ]
    assert config.steps["clip"] == "local"  # what was wrong falls back to the default


def test_concurrency_must_be_a_positive_integer(tmp_path, monkeypatch):
    text = ('[build]\nconcurrency = 0\n\n[backends.fal]\nconcurrency = 2.5\n\n'
            '[backends.kling]\nconcurrency = "4"\n\n[backends.local]\nconcurrency = true\n')
    found = errors(tmp_path, monkeypatch, text)
    assert [(c, s, m) for c, s, m, _ in found] == [
        ("F0506", "filmc.toml:2:15", "`concurrency` must be a positive whole number"),
        ("F0506", "filmc.toml:5:15", "`concurrency` must be a positive whole number"),
        ("F0506", "filmc.toml:8:15", "`concurrency` must be a positive whole number"),
        ("F0506", "filmc.toml:11:15", "`concurrency` must be a positive whole number"),
    ]


def test_gc_keep_commits(tmp_path, monkeypatch):
    assert load(tmp_path, monkeypatch, None)[0].keep_commits == 10
    config, diags = load(tmp_path, monkeypatch, "[gc]\nkeep_commits = 0\n")
    assert list(diags) == [] and config.keep_commits == 0
    text = '[gc]\nkeep_commits = -1\nkeep = 3\n'
    config, diags = load(tmp_path, monkeypatch, text)
    assert [(d.code, f"{d.span}", d.message, d.help) for d in diags.sorted()] == [
        ("F0506", "filmc.toml:2:16", "`keep_commits` must be a whole number, zero or more",
         "how many of the latest commits `filmc gc` keeps what they need, e.g. "
         "`keep_commits = 20` (0: the working tree only)"),
        ("F0502", "filmc.toml:3:1", "unknown key `keep`", "known: `keep_commits`"),
    ]
    assert config.keep_commits == 10


def test_bad_prices(tmp_path, monkeypatch):
    text = ('[backends.fal.prices]\nkeyframe = -0.5\nclip = { per_second = "cheap" }\n'
            'sheet = "free"\nspeech = nan\nplate = {}\n')
    found = errors(tmp_path, monkeypatch, text)
    assert [(c, s, m) for c, s, m, _ in found] == [
        ("F0507", "filmc.toml:2:12", "bad price for `keyframe`"),
        ("F0507", "filmc.toml:3:23", "`per_second` must be a number, zero or more"),
        ("F0507", "filmc.toml:4:9", "bad price for `sheet`"),
        ("F0507", "filmc.toml:5:10", "bad price for `speech`"),
        ("F0507", "filmc.toml:6:9", "bad price for `plate`"),
    ]
    assert found[0][3] == ("a price per output (`keyframe = 0.04`) or per second of output "
                           "(`keyframe = { per_second = 0.07 }`), zero or more")


def test_a_secret_written_in_the_file(tmp_path, monkeypatch):
    text = ('[backends.fal]\nmodel = "flux"\napi_key = "fal-sk-0123456789abcdef"\n\n'
            '[backends.openai]\ntoken = "sk-live-abc"\nmax_tokens = 4\n')
    sources = Sources()
    config, diags = load(tmp_path, monkeypatch, text, sources)
    assert [(d.code, f"{d.span}", d.message) for d in diags.sorted()] == [
        ("F0508", "filmc.toml:3:1", "secrets never go in filmc.toml: put it in an environment "
                                    "variable and name it with `api_key_env`"),
        ("F0508", "filmc.toml:6:1", "secrets never go in filmc.toml: put it in an environment "
                                    "variable and name it with `token_env`"),
    ]
    assert diags.sorted()[0].help == ('replace it with `api_key_env = "FAL_API_KEY"` and '
                                      '`export FAL_API_KEY=...` in your shell')
    # The secret is kept nowhere: not in the settings, not in the rendered diagnostic.
    assert config.backends["fal"].settings == {"model": "flux"}
    assert config.backends["openai"].settings == {"max_tokens": 4}
    rendered = render_all(diags.sorted(), sources)
    assert "fal-sk-0123456789abcdef" not in rendered and "sk-live-abc" not in rendered
    assert '3 | api_key = "***********************"' in rendered
    assert "fal-sk" not in repr(config)


def test_env_names_must_be_valid(tmp_path, monkeypatch):
    text = '[backends.kling]\naccess_key_env = "KLING ACCESS"\nsecret_key_env = 5\n'
    found = errors(tmp_path, monkeypatch, text)
    assert [(c, s, m) for c, s, m, _ in found] == [
        ("F0509", "filmc.toml:2:18", "`access_key_env` must name an environment variable"),
        ("F0509", "filmc.toml:3:18", "`secret_key_env` must name an environment variable"),
    ]


def test_wrong_shapes_and_types(tmp_path, monkeypatch):
    text = ('steps = "fal"\n\n[backends]\nfal = 3\n\n[backends.local]\ntype = "comfyui"\n\n'
            '[backends.flux]\ntype = "fall"\n\n[build]\ncurrency = "US dollars"\n')
    _, diags = load(tmp_path, monkeypatch, text)
    assert [(d.code, d.severity, f"{d.span}", d.message, d.help) for d in diags.sorted()] == [
        ("F0505", "error", "filmc.toml:1:9", "`steps` must be a table",
         "write `[steps]` and its keys below it"),
        ("F0505", "error", "filmc.toml:4:7", "`backends.fal` must be a table",
         "write `[backends.fal]` and its settings below it"),
        ("F0505", "error", "filmc.toml:7:8", "the built-in `local` backend cannot change its type",
         "give the other backend its own name, e.g. `[backends.mine]`"),
        ("F0510", "error", "filmc.toml:10:8", "no backend adapter of type `fall` is installed",
         "did you mean `fal`?"),
        ("F0505", "error", "filmc.toml:13:12", "`currency` must be a currency code, such as \"USD\"",
         "prices are plain numbers in this currency"),
    ]


def test_errors_render_with_the_source_line(tmp_path, monkeypatch):
    sources = Sources()
    _, diags = load(tmp_path, monkeypatch, '[steps]\nclip = "klign"\n\n[backends.kling]\n',
                    sources)
    assert render_all(diags.sorted(), sources) == (
        "error[F0504]: no backend `klign` for step `clip`\n"
        " --> filmc.toml:2:8\n"
        "  |\n"
        '2 | clip = "klign"\n'
        "  |        ^^^^^^^ not configured\n"
        "  |\n"
        "  = help: did you mean `kling`?"
    )


def test_positions_inside_multiline_values_and_quoted_keys(tmp_path, monkeypatch):
    text = ('[backends.comfyui]\nnote = """\n[steps]\nclip = 1\n"""\n'
            'loras = [\n  "a",\n  { x = 1 },\n]\n"concurrency" = 0\n')
    assert errors(tmp_path, monkeypatch, text)[0][:2] == ("F0506", "filmc.toml:10:17")
