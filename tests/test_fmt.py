"""The formatter proves itself: stable, equivalent, and every shipped file is a fixed point."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filmc.lang import ast
from filmc.lang.diagnostics import Diagnostics
from filmc.lang.fmt import format_module, format_text
from filmc.lang.parser import parse

ROOT = Path(__file__).resolve().parent.parent


# --- helpers -------------------------------------------------------------------------


def parse_ok(text: str, file: str = "t.film") -> ast.Module:
    diags = Diagnostics()
    module = parse(text, file, diags)
    assert not diags.errors, [d.message for d in diags.errors]
    return module


def fmt(text: str) -> str:
    diags = Diagnostics()
    out = format_text(text, "t.film", diags)
    assert out is not None, [d.message for d in diags.errors]
    return out


def assert_stable(text: str) -> str:
    once = fmt(text)
    assert fmt(once) == once
    return once


def assert_equivalent(source: str, formatted: str) -> None:
    a, b = parse_ok(source), parse_ok(formatted)
    assert a.decls == b.decls
    assert [c.text for c in a.comments] == [c.text for c in b.comments]


def assert_layout(out: str) -> None:
    """What every formatted file looks like, whatever it says."""
    if not out:
        return
    assert out.endswith("\n") and not out.endswith("\n\n")
    lines = out[:-1].split("\n")
    assert lines[0] != ""
    for prev, line in zip(lines, lines[1:]):
        assert not (prev == "" and line == ""), "two blank lines in a row"
        opens = prev.endswith(" {") and "//" not in prev
        assert not (opens and line == ""), "blank line after `{`"
        assert not (prev == "" and line.strip() == "}"), "blank line before `}`"
    for line in lines:
        assert line == line.rstrip(), f"trailing whitespace: {line!r}"
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0 and not line.lstrip(" ").startswith("\t"), line


def check(source: str, expected: str) -> None:
    out = fmt(source)
    assert out == expected
    assert fmt(out) == out
    assert_equivalent(source, out)
    assert_layout(out)


# --- hand-written cases ----------------------------------------------------------------


def test_messy_indentation_and_tabs():
    check(
        'film   "Wolf Totem"{\n'
        "\tsize  1920x1080\n"
        "        fps\t24\n"
        "\t  camera   wide    35mm\n"
        "}\n",
        'film "Wolf Totem" {\n'
        "  size 1920x1080\n"
        "  fps 24\n"
        "  camera wide 35mm\n"
        "}\n",
    )


def test_nested_blocks_indent_two_spaces_per_level():
    check(
        "scene hunt {\n"
        "shot wide 4s {\n"
        "camera wide\n"
        "}\n"
        "}\n"
        "character CHEN {\n"
        '        outfit winter "coat" {\n'
        '  ref "a.png"\n'
        "                }\n"
        "}\n",
        "scene hunt {\n"
        "  shot wide 4s {\n"
        "    camera wide\n"
        "  }\n"
        "}\n"
        "\n"
        "character CHEN {\n"
        '  outfit winter "coat" {\n'
        '    ref "a.png"\n'
        "  }\n"
        "}\n",
    )


def test_blank_lines_collapse_and_never_touch_braces():
    check(
        "\n\n\n"
        'film "F" {\n'
        "\n\n"
        "  size 1920x1080\n"
        "\n\n\n"
        "  fps 24\n"
        "  aspect 2.39:1\n"
        "\n"
        "}\n"
        "\n\n\n"
        "scene a {\n"
        "  shot one {\n"
        "  }\n"
        "\n\n"
        "  shot two {\n"
        "  }\n"
        "  shot three {\n"
        "  }\n"
        "}\n"
        "\n\n",
        'film "F" {\n'
        "  size 1920x1080\n"
        "\n"
        "  fps 24\n"
        "  aspect 2.39:1\n"
        "}\n"
        "\n"
        "scene a {\n"
        "  shot one {\n"
        "  }\n"
        "\n"
        "  shot two {\n"
        "  }\n"
        "  shot three {\n"
        "  }\n"
        "}\n",
    )


def test_one_blank_line_between_declarations_none_between_uses():
    check(
        "use std.camera\n"
        "\n\n"
        "use   std . light\n"
        'use "cast.film"\n'
        'film "F" {\n'
        "}\n"
        'use "more.film"\n'
        "character A {\n"
        "}\n",
        "use std.camera\n"
        "use std.light\n"
        'use "cast.film"\n'
        "\n"
        'film "F" {\n'
        "}\n"
        "\n"
        'use "more.film"\n'
        "\n"
        "character A {\n"
        "}\n",
    )


def test_comments_in_every_position():
    check(
        "// file start\n"
        "\n"
        "  // second line of the header, indented\n"
        "use std.camera   // trailing a use\n"
        "// between uses\n"
        "use std.light\n"
        "// between declarations\n"
        'film "F" {   // after {\n'
        "    // before an item\n"
        "  size 1920x1080 //trailing an attribute, no space\n"
        "\n"
        "\n"
        "        // after a blank line\n"
        "\n"
        "  fps 24\n"
        "  // before }\n"
        "}  // after }\n"
        "character CHEN {\n"
        '  outfit winter "coat" {\n'
        "  // alone in a block\n"
        "  }\n"
        '  CHEN: "hi"   // trailing dialogue\n'
        "}\n"
        "\n"
        "\n"
        "// end of file\n"
        "   // really the end   \n",
        "// file start\n"
        "\n"
        "// second line of the header, indented\n"
        "use std.camera  // trailing a use\n"
        "// between uses\n"
        "use std.light\n"
        "\n"
        "// between declarations\n"
        'film "F" {  // after {\n'
        "  // before an item\n"
        "  size 1920x1080  //trailing an attribute, no space\n"
        "\n"
        "  // after a blank line\n"
        "\n"
        "  fps 24\n"
        "  // before }\n"
        "}  // after }\n"
        "\n"
        "character CHEN {\n"
        '  outfit winter "coat" {\n'
        "    // alone in a block\n"
        "  }\n"
        '  CHEN: "hi"  // trailing dialogue\n'
        "}\n"
        "\n"
        "// end of file\n"
        "// really the end\n",
    )


def test_comment_text_is_never_changed():
    check(
        "//no space\n"
        "//   three spaces and // a nested marker, \"quotes\" and 中文\n"
        "//\n"
        "scene a {\n"
        "}\n",
        "//no space\n"
        "//   three spaces and // a nested marker, \"quotes\" and 中文\n"
        "//\n"
        "scene a {\n"
        "}\n",
    )


def test_comment_just_after_a_closing_brace_gets_the_blank_line_of_a_new_declaration():
    check(
        "scene a {\n"
        "}\n"
        "// about b\n"
        "\n"
        "scene b {\n"
        "}\n",
        "scene a {\n"
        "}\n"
        "\n"
        "// about b\n"
        "\n"
        "scene b {\n"
        "}\n",
    )


def test_unicode_ids_and_strings():
    check(
        'character 陈阵   "陈阵"{\n'
        '  look   "北京知青，二十岁"\n'
        "}\n"
        'scene 狩猎 "狩猎" ext 草原 黄昏 {\n'
        "  shot 全景 4s {\n"
        "    cast 陈阵(冬装)  毕利格\n"
        '    陈阵 ( 低声 ) :  "它们在包围羊群。"\n'
        "  }\n"
        "}\n",
        'character 陈阵 "陈阵" {\n'
        '  look "北京知青，二十岁"\n'
        "}\n"
        "\n"
        'scene 狩猎 "狩猎" EXT 草原 黄昏 {\n'
        "  shot 全景 4s {\n"
        "    cast 陈阵(冬装), 毕利格\n"
        '    陈阵 (低声): "它们在包围羊群。"\n'
        "  }\n"
        "}\n",
    )


def test_strings_are_requoted_with_canonical_escapes():
    check(
        'film "say \\"hi\\"" {\n'
        '  note "tab\there" \n'
        '  note "back\\\\slash \\t \\n \\u{4e2d} \\u{22}"\n'
        '  negative "\\r"\n'
        "}\n",
        'film "say \\"hi\\"" {\n'
        '  note "tab\\there"\n'
        '  note "back\\\\slash \\t \\n 中 \\""\n'
        '  negative "\\r"\n'
        "}\n",
    )


def test_literals_colours_and_names_are_kept_as_written():
    check(
        "preset light amber {\n"
        "  palette #F4A259   #0a0a0a\n"
        "  contrast +1.25\n"
        "  brightness -0.5\n"
        "  key Left\n"
        "}\n",
        "preset light amber {\n"
        "  palette #F4A259 #0a0a0a\n"
        "  contrast +1.25\n"
        "  brightness -0.5\n"
        "  key Left\n"
        "}\n",
    )


def test_cast_commas_added_and_normalised_other_lists_spaced():
    check(
        "scene a {\n"
        "  cast CHEN WOLF\n"
        "  shot one 0:04 {\n"
        "    cast CHEN ( winter ) ,WOLF,BILGE   ,  LAMB\n"
        "    camera close_up, low_angle ,85mm\n"
        "    tags a,b\n"
        "  }\n"
        "}\n"
        "character X {\n"
        "  cast A B\n"
        "}\n",
        "scene a {\n"
        "  cast CHEN, WOLF\n"
        "  shot one 0:04 {\n"
        "    cast CHEN(winter), WOLF, BILGE, LAMB\n"
        "    camera close_up low_angle 85mm\n"
        "    tags a b\n"
        "  }\n"
        "}\n"
        "\n"
        "character X {\n"
        "  cast A B\n"
        "}\n",
    )


def test_scene_settings_are_upper_case():
    check(
        'scene a "A" ext STEPPE dusk {\n}\n'
        "scene b int. YURT {\n}\n"
        "scene c Int./Ext. CAR NIGHT {\n}\n"
        "scene d i/e DOOR {\n}\n",
        'scene a "A" EXT STEPPE dusk {\n}\n'
        "\n"
        "scene b INT YURT {\n}\n"
        "\n"
        "scene c INT/EXT CAR NIGHT {\n}\n"
        "\n"
        "scene d INT/EXT DOOR {\n}\n",
    )


def test_empty_blocks():
    check(
        'film "F" {}\n'
        "character A {   }\n"
        "location STEPPE {\n"
        "  at NIGHT {}\n"
        "}\n"
        "scene s {\n"
        "  shot a {}  // to do\n"
        "}\n",
        'film "F" {\n'
        "}\n"
        "\n"
        "character A {\n"
        "}\n"
        "\n"
        "location STEPPE {\n"
        "  at NIGHT {\n"
        "  }\n"
        "}\n"
        "\n"
        "scene s {\n"
        "  shot a {  // to do\n"
        "  }\n"
        "}\n",
    )


def test_headers_of_every_declaration():
    check(
        "use std.camera\n"
        'use "cast.film"\n'
        'film "T" {\n}\n'
        'character CHEN "Chen Zhen" {\n}\n'
        "character WOLF {\n}\n"
        'location STEPPE "the steppe" {\n}\n'
        "preset camera hero {\n}\n"
        'scene hunt "The Hunt" EXT STEPPE DUSK {\n'
        "  shot wide 4s {\n  }\n"
        "  shot close {\n  }\n"
        "}\n"
        "scene bare {\n}\n",
        "use std.camera\n"
        'use "cast.film"\n'
        "\n"
        'film "T" {\n}\n'
        "\n"
        'character CHEN "Chen Zhen" {\n}\n'
        "\n"
        "character WOLF {\n}\n"
        "\n"
        'location STEPPE "the steppe" {\n}\n'
        "\n"
        "preset camera hero {\n}\n"
        "\n"
        'scene hunt "The Hunt" EXT STEPPE DUSK {\n'
        "  shot wide 4s {\n  }\n"
        "  shot close {\n  }\n"
        "}\n"
        "\n"
        "scene bare {\n}\n",
    )


def test_dialogue_lines():
    check(
        "scene s {\n"
        "  shot a {\n"
        '    CHEN:"Wait."\n'
        '    CHEN   (  very   quietly )  :   "Now."\n'
        '    BILGE (): "..."\n'
        "  }\n"
        "}\n",
        "scene s {\n"
        "  shot a {\n"
        '    CHEN: "Wait."\n'
        '    CHEN (very quietly): "Now."\n'
        '    BILGE (): "..."\n'
        "  }\n"
        "}\n",
    )


def test_empty_and_comment_only_files():
    assert fmt("") == ""
    assert fmt("\n\n  \n") == ""
    assert fmt("// just a note\n\n\n// and another  ") == "// just a note\n\n// and another\n"
    assert fmt("   // indented, on line 1\nscene a {\n}\n") == "// indented, on line 1\nscene a {\n}\n"


def test_crlf_bom_and_missing_final_newline():
    check(
        '\ufefffilm "F" {\r\n  fps 24  // x\r\n\r\n\r\n  size 1920x1080\r\n}',
        'film "F" {\n  fps 24  // x\n\n  size 1920x1080\n}\n',
    )


def test_syntax_errors_mean_no_rewrite():
    diags = Diagnostics()
    assert format_text('film "F" {\n  fps 24\n', "bad.film", diags) is None
    assert diags.errors
    diags = Diagnostics()
    assert format_text("scene s {\n  camera = wide\n}\n", "bad.film", diags) is None
    assert diags.errors


def test_errors_from_earlier_files_do_not_stop_formatting():
    diags = Diagnostics()
    assert format_text("scene {\n", "bad.film", diags) is None
    assert format_text("scene ok {\n}\n", "ok.film", diags) == "scene ok {\n}\n"


def test_a_tree_built_without_spans():
    module = ast.Module(
        "<built>",
        (
            ast.Use("std.camera", False),
            ast.Use("cast.film", True),
            ast.Scene(
                ast.Name("hunt"), ast.Str("The Hunt"),
                ast.Slug("EXT", ast.Name("STEPPE"), ast.Name("DUSK")),
                (
                    ast.Attr(ast.Name("cast"), (ast.Ref(ast.Name("CHEN"), ast.Name("winter")),
                                                ast.Name("WOLF"))),
                    ast.Shot(ast.Name("wide"), ast.Literal("4s"), (
                        ast.Dialogue(ast.Name("CHEN"), "quietly", ast.Str('say "hi"')),
                    )),
                ),
            ),
        ),
        (),
    )
    out = format_module(module)
    assert out == (
        "use std.camera\n"
        'use "cast.film"\n'
        "\n"
        'scene hunt "The Hunt" EXT STEPPE DUSK {\n'
        "  cast CHEN(winter), WOLF\n"
        "  shot wide 4s {\n"
        '    CHEN (quietly): "say \\"hi\\""\n'
        "  }\n"
        "}\n"
    )
    assert parse_ok(out).decls == module.decls


def test_a_feature_length_film_formats_fast():
    shot = (
        "  shot s{s}_{i} 4s {{\n"
        "    camera close_up low_angle 85mm\n"
        "    light golden_hour  // warm\n"
        "    cast CHEN(winter), WOLF\n"
        '    action "Chen lies flat in the grass, binoculars raised."\n'
        '    CHEN (quietly): "They\'re circling the herd."\n'
        "  }}\n"
    )
    parts = ['film "Bench" {\n  fps 24\n}\n']
    for s in range(100):
        parts.append(f'\nscene s{s} "Scene {s}" EXT LOC DUSK {{\n')
        parts += [shot.format(s=s, i=i) for i in range(30)]
        parts.append("}\n")
    text = "".join(parts)
    module = parse_ok(text)
    start = time.perf_counter()
    out = format_module(module)
    elapsed = time.perf_counter() - start
    assert out == text
    assert elapsed < 0.5, f"{elapsed:.3f}s for {text.count(chr(10))} lines"


# --- every shipped file is already formatted ----------------------------------------------


def _shipped_films() -> list[Path]:
    found = list((ROOT / "stdlib").rglob("*.film")) + list((ROOT / "examples").rglob("*.film"))
    return sorted(found)


@pytest.mark.parametrize("path", _shipped_films(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_file_is_formatted(path: Path):
    text = path.read_text("utf-8")
    diags = Diagnostics()
    out = format_text(text, str(path), diags)
    assert out is not None, f"{path} has syntax errors: {[d.message for d in diags.errors]}"
    assert out == text, f"{path} is not formatted: run `filmc fmt {path.relative_to(ROOT)}`"


# --- random films: stable and equivalent ------------------------------------------------

NAMES = ["CHEN", "WOLF", "bilge", "winter", "wide", "close_up", "x1", "陈阵", "草原", "_a"]
KEYS = ["camera", "light", "look", "note", "tags", "takes", "palette", "ref", "style", "键"]
BLOCK_KEYS = ["outfit", "at", "extra"]
LITERALS = ["4s", "0:04", "1.5s", "96f", "35mm", "1920x1080", "2.39:1", "24", "-12", "+0.85"]
COLORS = ["#f4a259", "#FFF", "#0a0a0a"]
SETTINGS = ["INT", "EXT", "INT/EXT", "ext", "int.", "Int./Ext.", "i/e", "EXT."]
TEXT = st.text(
    st.sampled_from(list('ab ZQ"\\\t\n/{}()#:,中文é')) | st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    max_size=12,
)
COMMENT = st.text(st.sampled_from(list("ab /\"'{}()# 中文\t")), max_size=12)


@st.composite
def films(draw) -> str:
    """The text of a random valid film, with messy whitespace and comments everywhere."""
    lines: list[str] = []

    def sp() -> str:
        return draw(st.sampled_from([" ", " ", "  ", "\t", " \t "]))

    def opt() -> str:
        return draw(st.sampled_from(["", "", " ", "\t"]))

    def string() -> str:
        s = draw(TEXT)
        q = ast.quote(s)
        if draw(st.booleans()) and s:  # spell one character as a \u{...} escape
            i = draw(st.integers(0, len(s) - 1))
            q = ast.quote(s[:i])[:-1] + f"\\u{{{ord(s[i]):x}}}" + ast.quote(s[i + 1:])[1:]
        return q

    def value() -> str:
        kind = draw(st.integers(0, 4))
        if kind == 0:
            return draw(st.sampled_from(NAMES))
        if kind == 1:
            return string()
        if kind == 2:
            return draw(st.sampled_from(LITERALS))
        if kind == 3:
            return draw(st.sampled_from(COLORS))
        return f"{draw(st.sampled_from(NAMES))}{opt()}({opt()}{draw(st.sampled_from(NAMES))}{opt()})"

    def values(n_min: int = 0) -> str:
        out = ""
        for i in range(draw(st.integers(n_min, 4))):
            sep = sp() if i == 0 else draw(st.sampled_from([" ", "  ", ",", ", ", " , ", "\t"]))
            out += sep + value()
        return out

    def trailing() -> str:
        return opt() + " //" + draw(COMMENT) if draw(st.integers(0, 5)) == 0 else ""

    def emit(line: str) -> None:
        """A line, maybe with a trailing comment, then maybe blank lines and own-line comments."""
        lines.append(line + trailing())
        for _ in range(draw(st.integers(0, 3)) if draw(st.integers(0, 3)) == 0 else 0):
            if draw(st.booleans()):
                lines.append(draw(st.sampled_from(["", " ", "\t"])))
            else:
                lines.append(opt() + opt() + "//" + draw(COMMENT))

    def ind(depth: int) -> str:
        return draw(st.sampled_from(["  " * depth, "  " * depth, "\t" * depth, " " * depth, ""]))

    def body(head: str, depth: int, in_scene: bool = False, in_shot: bool = False) -> None:
        if draw(st.integers(0, 6)) == 0:
            emit(head + opt() + "{" + opt() + "}")
            return
        emit(head + opt() + "{")
        for _ in range(draw(st.integers(0, 4))):
            item(depth + 1, in_scene, in_shot)
        emit(ind(depth) + "}")

    def item(depth: int, in_scene: bool, in_shot: bool) -> None:
        pre = ind(depth)
        kind = draw(st.integers(0, 9))
        if kind <= 3:
            emit(pre + draw(st.sampled_from(KEYS)) + values())
        elif kind == 4:
            emit(pre + "cast" + values(1))
        elif kind == 5:
            paren = ""
            if draw(st.booleans()):
                paren = opt() + "(" + opt() + draw(st.sampled_from(["", "quietly", "to  WOLF", "低声"])) + opt() + ")"
            emit(pre + draw(st.sampled_from(NAMES)) + paren + opt() + ":" + opt() + string())
        elif kind in (6, 7) and depth < 3:
            if in_scene and not in_shot and draw(st.booleans()):
                dur = sp() + draw(st.sampled_from(LITERALS)) if draw(st.booleans()) else ""
                body(pre + "shot" + sp() + draw(st.sampled_from(NAMES)) + dur, depth,
                     in_shot=True)
            else:
                body(pre + draw(st.sampled_from(BLOCK_KEYS)) + values(), depth)
        else:
            emit(pre + draw(st.sampled_from(KEYS)))

    def decl() -> None:
        kind = draw(st.integers(0, 6))
        name = draw(st.sampled_from(NAMES))
        title = (sp() + string()) if draw(st.booleans()) else ""
        if kind == 0:
            target = string() if draw(st.booleans()) else "std" + opt() + "." + opt() + name
            emit(ind(0) + "use" + sp() + target)
        elif kind == 1:
            body(ind(0) + "film" + sp() + string(), 0)
        elif kind == 2:
            body(ind(0) + draw(st.sampled_from(["character", "location"])) + sp() + name + title, 0)
        elif kind == 3:
            kw = draw(st.sampled_from(["camera", "light", "style"]))
            body(ind(0) + "preset" + sp() + kw + sp() + name, 0)
        else:
            slug = ""
            if draw(st.booleans()):
                slug = sp() + draw(st.sampled_from(SETTINGS)) + sp() + name
                slug += (sp() + draw(st.sampled_from(["DUSK", "night", "黄昏"]))) if draw(st.booleans()) else ""
            body(ind(0) + "scene" + sp() + name + title + slug, 0, in_scene=True)

    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from(["", "//" + draw(COMMENT), " // x"])))
    for _ in range(draw(st.integers(0, 5))):
        decl()
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline, newline * 2]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(films())
def test_random_films_format_stably_and_equivalently(source: str):
    parse_ok(source)  # the strategy only writes valid films
    out = assert_stable(source)
    assert_equivalent(source, out)
    assert_layout(out)
