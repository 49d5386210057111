"""The local backend's storyboard panels, checked the way a film-maker looks at them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageStat

from filmc.backends.local import fonts, panels

W, H = 960, 402
NIGHT = {"palette": ["#101a33", "#1b2433", "#a9c1e8", "#05080f"], "contrast": 1.2,
         "brightness": 0.4, "key": "left"}
NOON = {"palette": ["#bcd6ee", "#c9b07a", "#ffffff", "#2a2a2a"], "contrast": 1.4,
        "brightness": 1.2, "key": "top"}


def params(**over) -> dict:
    p = {"width": W, "height": H, "seed": 7, "take": 1,
         "camera": {"scale": 0.45, "tilt": 0.0},
         "light": {"palette": ["#8fb8de", "#7a8450", "#fff6e5", "#3d4a5c"], "contrast": 1.0,
                   "brightness": 1.0, "key": "right"},
         "style": {"palette": ["#d9c7a3", "#5b6b5a"], "grain": 0.35, "saturation": 0.9},
         "cast": ["CHEN"],
         "panel": {"scene": "hunt", "shot": "chen_watches", "location": "STEPPE", "time": "DUSK",
                   "action": "Chen lies flat in the grass, binoculars raised."}}
    for k, v in over.items():
        p[k] = {**p[k], **v} if isinstance(v, dict) and isinstance(p.get(k), dict) else v
    return p


def render(tmp_path: Path, name: str, **over) -> Image.Image:
    out = tmp_path / f"{name}.png"
    panels.render_keyframe(params(**over), "prompt line\nmore", [], out)
    img = Image.open(out)
    img.load()
    return img.convert("RGB")


def colour_fraction(img: Image.Image, rgb: tuple[int, int, int], tol: int = 2) -> float:
    """Share of the pixels within `tol` of `rgb` on every channel."""
    bands = [b.point(lambda v, c=c: 255 if abs(v - c) <= tol else 0) for b, c in zip(img.split(), rgb)]
    mask = bands[0]
    for b in bands[1:]:
        mask = Image.composite(b, Image.new("L", img.size, 0), mask)
    return ImageStat.Stat(mask).mean[0] / 255


def horizon_row(img: Image.Image, x: int) -> int:
    """The row where the sky meets the ground in column `x`: the largest brightness step."""
    col = [sum(img.getpixel((x, y))) for y in range(img.height)]
    lo, hi = round(img.height * 0.07), round(img.height * 0.8)  # skip the header and caption
    steps = [(abs(col[y + 4] - col[y - 4]), y) for y in range(lo + 4, hi - 4)]
    return max(steps)[1]


def test_extreme_close_up_fills_the_frame_and_extreme_wide_shows_a_speck(tmp_path):
    chen = panels.character_colour("CHEN")
    ecu = colour_fraction(render(tmp_path, "ecu", camera={"scale": 3.0}), panels.mix(chen, (255,) * 3, 0.35))
    ecu += colour_fraction(render(tmp_path, "ecu", camera={"scale": 3.0}), chen)
    ews = colour_fraction(render(tmp_path, "ews", camera={"scale": 0.08}), chen)
    ews += colour_fraction(render(tmp_path, "ews", camera={"scale": 0.08}),
                           panels.mix(chen, (255,) * 3, 0.35))
    assert ecu > 0.3
    assert ews < 0.01
    assert ecu > 30 * ews


def test_low_angle_drops_the_horizon_and_high_angle_raises_it(tmp_path):
    low = horizon_row(render(tmp_path, "low", cast=[], camera={"tilt": 15}), W // 8)
    eye = horizon_row(render(tmp_path, "eye", cast=[], camera={"tilt": 0}), W // 8)
    high = horizon_row(render(tmp_path, "high", cast=[], camera={"tilt": -25}), W // 8)
    assert high < eye < low  # rows count down from the top


def test_dutch_angle_tilts_the_horizon(tmp_path):
    level = render(tmp_path, "level", cast=[])
    dutch = render(tmp_path, "dutch", cast=[], camera={"roll": 15})
    assert abs(horizon_row(level, W // 8) - horizon_row(level, W * 7 // 8)) <= 6
    left, right = horizon_row(dutch, W // 8), horizon_row(dutch, W * 7 // 8)
    assert left - right > 0.2 * W * 0.75 * 0.27  # tan(15 deg) = 0.27, allow for the hills


def test_overhead_has_no_horizon_and_still_shows_the_cast(tmp_path):
    img = render(tmp_path, "overhead", camera={"overhead": 1, "scale": 0.25})
    assert colour_fraction(img, panels.character_colour("CHEN")) > 0.002


def test_a_character_keeps_its_colour_across_panels_and_lights(tmp_path):
    chen = panels.character_colour("CHEN")
    assert chen == panels.character_colour("CHEN")
    assert chen != panels.character_colour("BILGEE")
    a = render(tmp_path, "a", cast=["CHEN", "BILGEE"], light=NIGHT, camera={"scale": 0.8})
    b = render(tmp_path, "b", cast=["CHEN"], light=NOON, camera={"scale": 1.6, "tilt": 15})
    for img in (a, b):
        assert colour_fraction(img, chen, tol=0) > 0.01
    assert colour_fraction(a, panels.character_colour("BILGEE"), tol=0) > 0.01
    assert colour_fraction(b, panels.character_colour("BILGEE"), tol=0) == 0


def test_light_presets_change_the_mood(tmp_path):
    night = ImageStat.Stat(render(tmp_path, "night", cast=[], light=NIGHT))
    noon = ImageStat.Stat(render(tmp_path, "noon", cast=[], light=NOON))
    assert sum(noon.mean) > sum(night.mean) + 150
    assert sum(noon.stddev) > sum(night.stddev)


def test_style_saturation_zero_gives_grey_world(tmp_path):
    img = render(tmp_path, "bw", cast=[], style={"saturation": 0, "palette": ["#e6e6e6", "#111111"]})
    r, g, b = img.getpixel((W // 2, H // 3))
    assert max(r, g, b) - min(r, g, b) <= 3


def test_chinese_text_renders_with_real_glyphs():
    f = fonts.font(48, "陈阵看着狼群")
    tofu = fonts.glyph_bitmap(f, "\ue000")
    glyphs = [fonts.glyph_bitmap(f, ch) for ch in "陈阵狼草原"]
    assert all(g != tofu for g in glyphs)
    assert len(set(glyphs)) == len(glyphs)  # different characters, different pictures
    assert fonts.missing("狼图腾 Wolf Totem — 陈阵, 1967 毕利格 ガマ 바투") == ""


def test_cjk_action_wraps_per_character(tmp_path):
    f = fonts.font(30)
    text = "一条狼在草原上奔跑" * 12
    lines = panels.wrap(text, 400, f.getlength)
    assert len(lines) > 3
    assert "".join(lines) == text
    assert all(f.getlength(line) <= 400 for line in lines)
    out = tmp_path / "cjk.png"
    panels.render_keyframe(params(panel={"action": text}, cast=["陈阵"]), "", [], out)
    assert Image.open(out).size == (W, H)


def test_same_inputs_give_the_same_bytes(tmp_path):
    p = params(cast=["CHEN", "BILGEE"], camera={"roll": 15, "motion": "push_in"})
    panels.render_keyframe(p, "x", [], tmp_path / "1.png")
    panels.render_keyframe(p, "x", [], tmp_path / "2.png")
    assert (tmp_path / "1.png").read_bytes() == (tmp_path / "2.png").read_bytes()
    panels.render_keyframe({**p, "take": 2}, "x", [], tmp_path / "3.png")
    assert (tmp_path / "3.png").read_bytes() != (tmp_path / "1.png").read_bytes()


def test_a_full_size_panel(tmp_path):
    """How fast one renders is bench/bench_media.py's business, not a test's."""
    p = params(width=1920, height=804, cast=["CHEN", "BILGEE"], camera={"motion": "pan_left"})
    panels.render_keyframe(p, "", [], tmp_path / "0.png")
    assert Image.open(tmp_path / "0.png").size == (1920, 804)


def test_sheet_and_plate(tmp_path):
    panels.render_sheet({"width": 512, "height": 512, "character": "CHEN"},
                        "Character reference sheet\n陈阵, thin scar above the left eyebrow", [],
                        tmp_path / "sheet.png")
    sheet = Image.open(tmp_path / "sheet.png").convert("RGB")
    assert sheet.size == (512, 512)
    assert colour_fraction(sheet, panels.character_colour("CHEN"), tol=0) > 0.02
    panels.render_plate({"width": 640, "height": 268, "light": NIGHT,
                         "panel": {"location": "STEPPE", "time": "NIGHT"}},
                        "endless grassland at night", [], tmp_path / "plate.png")
    assert Image.open(tmp_path / "plate.png").size == (640, 268)


@pytest.mark.parametrize("n, columns, rows", [(10, 4, 3), (1, 4, 1), (4, 2, 2)])
def test_storyboard_contact_sheet(tmp_path, n, columns, rows):
    frames = []
    for i in range(n):
        out = tmp_path / f"k{i}.png"
        panels.render_keyframe(params(take=i + 1), "", [], out)
        frames.append(out)
    sheet_path = tmp_path / "storyboard.png"
    panels.render_storyboard(frames, [f"hunt/shot{i}" for i in range(n)], sheet_path, columns=columns)
    sheet = Image.open(sheet_path)
    th = round(panels.THUMB_W * H / W)
    assert sheet.width == 8 + columns * (panels.THUMB_W + 8)
    assert sheet.height == 8 + rows * (th + 27 + 8)
    assert not (tmp_path / "storyboard-2.png").exists()


def test_a_long_storyboard_has_pages_and_each_is_laid_out(tmp_path, monkeypatch):
    """Past one page's height the sheet goes on: every page is an output of the step, and
    the build lays out each one (they used to be left behind in the work folder)."""
    from filmc.engine.executor import Outcome, Stored
    from filmc.engine.layout import places
    from filmc.lang.steps import StepId

    monkeypatch.setattr(panels, "MAX_SHEET_H", 400)  # two rows of panels a page
    frames = []
    for i in range(12):
        out = tmp_path / f"k{i}.png"
        panels.render_keyframe(params(take=i + 1), "", [], out)
        frames.append(out)
    pages = panels.render_storyboard(frames, [f"s/{i}" for i in range(12)],
                                     tmp_path / "storyboard.png")
    assert [p.name for p in pages] == ["storyboard.png", "storyboard-2.png"]
    outcome = Outcome(StepId("storyboard"), "local", "ran",
                      outputs=tuple(Stored("page", "a" * 63 + str(i), ".png") for i in range(3)))
    assert [rel for rel, _d in places(outcome, {})] == ["storyboard.png", "storyboard-2.png",
                                                        "storyboard-3.png"]
