"""The local backend's storyboard panels, checked the way a film-maker looks at them."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

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
    bands = [b.point(lambda v, c=c: 255 if abs(v - c) <= tol else 0)
             for b, c in zip(img.split(), rgb)]
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
    ecu = colour_fraction(render(tmp_path, "ecu", camera={"scale": 3.0}),
                          panels.mix(chen, (255,) * 3, 0.35))
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
    img = render(tmp_path, "bw", cast=[],
                 style={"saturation": 0, "palette": ["#e6e6e6", "#111111"]})
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
    panels.render_storyboard(frames, [f"hunt/shot{i}" for i in range(n)], sheet_path,
                             columns=columns)
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
    # A scene's pages, named by its id: storyboard/hunt.png, hunt-2.png...
    outcome = Outcome(StepId.storyboard("hunt"), "local", "ran",
                      outputs=tuple(Stored("page", "a" * 63 + str(i), ".png") for i in range(3)))
    assert [rel for rel, _d in places(outcome)] == ["storyboard/hunt.png", "storyboard/hunt-2.png",
                                                        "storyboard/hunt-3.png"]


def test_a_scene_page_is_headed_by_its_number_and_title_in_any_script(tmp_path, monkeypatch):
    """Each page of a scene says which scene it is (a page opened on its own, or printed),
    Chinese titles drawn with the bundled font's glyphs; the header takes its height from
    the page, not from the panels, which keep their places below it."""
    monkeypatch.setattr(panels, "MAX_SHEET_H", 380)  # two rows a page, one under a header
    frames = []
    for i in range(9):
        out = tmp_path / f"k{i}.png"
        panels.render_keyframe(params(take=i + 1), "", [], out)
        frames.append(out)
    plain = panels.render_storyboard(frames, [str(i) for i in range(9)], tmp_path / "a.png")
    headed = panels.render_storyboard(frames, [str(i) for i in range(9)], tmp_path / "b.png",
                                      heading=("SCENE 2  风筝", "three"))
    th = round(panels.THUMB_W * H / W)
    cell = th + 27 + 8
    band = round(panels.HEADER_SIZE * 1.8) + 8
    # The band takes a row's room here: the same panels need one page more.
    assert len(plain) == 2 and len(headed) == 3
    first = Image.open(headed[0]).convert("RGB")
    assert first.size == (8 + 4 * (panels.THUMB_W + 8), band + 8 + cell)
    # The title's glyphs are in the band (white text), drawn from a face that has them.
    assert not fonts.missing("风筝", fonts.font(panels.HEADER_SIZE, "风筝").path)
    left = first.crop((0, 0, first.width // 2, band - 4))
    assert sum(n for n, c in left.getcolors(1 << 16) if min(c) > 200) > 60
    # Below the band, the panels are the unheaded sheet's, moved down by the band.
    a = Image.open(plain[0]).convert("RGB")
    assert first.crop((0, band, first.width, band + 8 + cell)).tobytes() == \
        a.crop((0, 0, a.width, 8 + cell)).tobytes()
    # The page count is in the header when there are several pages: another page, other pixels.
    right = first.crop((first.width // 2, 0, first.width, band - 4)).tobytes()
    assert right != Image.open(headed[1]).convert("RGB").crop(
        (first.width // 2, 0, first.width, band - 4)).tobytes()


# ---------------------------------------------------------------- keyframe candidates
#
# A shot's candidates are the keyframes a user compares and picks from; offline the
# animatic draws every one, and they must read as different sketches of the same shot.

CANDIDATES = ["local-1", "local-2", "local-3", "openai-1", "openai-2", "openai-4"]
SHOTS = {  # shot sizes and angles of the camera presets, each with a cast
    "extreme_wide": ({"scale": 0.08}, ["CHEN"]),
    "wide_high": ({"scale": 0.25, "tilt": -25}, ["CHEN", "BILGEE", "GASMA"]),
    "medium": ({"scale": 0.45}, ["CHEN"]),
    "medium_two": ({"scale": 0.45}, ["CHEN", "BILGEE"]),
    "medium_close_two": ({"scale": 0.8}, ["CHEN", "BILGEE"]),
    "close_low": ({"scale": 1.6, "tilt": 15}, ["CHEN"]),
    "extreme_close": ({"scale": 3.0}, ["CHEN"]),
    "dutch": ({"scale": 0.6, "roll": 15}, ["CHEN", "BILGEE"]),
    "overhead": ({"overhead": 1, "scale": 0.25}, ["CHEN", "BILGEE"]),
}
# Shots where the whole figure shows, and its height in frames (draw.py's scale table).
WHOLE = {"extreme_wide": 0.07, "wide_high": 0.3, "medium": 0.8, "medium_two": 0.8}
# A light whose sky, land and hills are far apart, so the line where the ground starts is exact.
LINES = {"palette": ["#1ee61e", "#1e1e1e", "#ffffff", "#e61e1e"], "contrast": 1.0,
         "brightness": 1.0, "key": "front"}


def cand(name: str | None, shot: str | None = None, take: int = 1, **over) -> dict:
    """The params of candidate `name` (`None`: a take without a candidate name) of `shot`;
    the compiler names a backend's nth candidate `<backend>-n` and gives it take n."""
    if shot is not None:
        camera, cast = SHOTS[shot]
        over = {"camera": camera, "cast": cast, **over}
    if name is not None:
        over["candidate"] = name
        take = int(name.rsplit("-", 1)[1])
    return params(take=take, **over)


def draw(tmp_path: Path, p: dict, prompt: str = "") -> Image.Image:
    out = tmp_path / "panel.png"
    panels.render_keyframe(p, prompt, [], out)
    with Image.open(out) as img:
        return img.convert("RGB")


def mask(img: Image.Image, rgb: tuple[int, int, int], tol: int = 0) -> Image.Image:
    """An 'L' mask of the pixels within `tol` of `rgb` on every channel."""
    bands = [b.point(lambda v, c=c: 255 if abs(v - c) <= tol else 0)
             for b, c in zip(img.split(), rgb)]
    return ImageChops.multiply(ImageChops.multiply(bands[0], bands[1]), bands[2])


def at_a_glance(img: Image.Image) -> Image.Image:
    """The picture as a contact sheet shows it: 1/8 of the size, header and caption cut off."""
    return img.crop((0, round(H * 0.06), W, round(H * 0.8))).reduce(8)


def changed_share(a: Image.Image, b: Image.Image) -> float:
    """Share of the glance-sized picture whose colour changed visibly (by more than 24
    levels on some channel) from `a` to `b`."""
    r, g, bl = ImageChops.difference(at_a_glance(a), at_a_glance(b)).split()
    moved = ImageChops.lighter(ImageChops.lighter(r, g), bl).point(lambda v: 255 if v > 24 else 0)
    return ImageStat.Stat(moved).mean[0] / 255


def ground_line(img: Image.Image, x: int) -> int:
    """The row where the ground starts in column `x`, under the `LINES` light without grain:
    scanning up from the foreground, the first step in colour (hills and landmarks all stand
    on the horizon, so they start there too)."""
    col = [img.getpixel((x, y)) for y in range(img.height)]
    for y in range(round(img.height * 0.88), round(img.height * 0.06), -1):
        if sum(abs(a - b) for a, b in zip(col[y - 1], col[y])) > 12:
            return y
    return -1


def figure_box(img: Image.Image, cid: str) -> tuple[int, int, int, int]:
    """The box of a standing figure, from the top of its head down: its colour, its head's
    and hands' lighter one and its outline's darker one (a small figure is mostly outline),
    not its label above it."""
    colour = panels.character_colour(cid)
    head = mask(img, panels.mix(colour, (255,) * 3, 0.35))
    top = head.getbbox()
    assert top is not None, f"no head of {cid}"
    edge = mask(img, panels.mix(colour, panels.INK, 0.55))
    whole = ImageChops.lighter(ImageChops.lighter(mask(img, colour), head), edge)
    box = whole.crop((0, top[1], img.width, img.height)).getbbox()
    assert box is not None
    return box[0], top[1], box[2], top[1] + box[3]


def test_a_candidate_is_drawn_the_same_every_time_and_unlike_the_others(tmp_path):
    ps = [cand("openai-2"), cand("local-2"), cand(None, take=2), cand(None, take=2, seed=None),
          cand("openai-2", seed=None), cand("openai-2", seed=8)]
    drawn = []
    for i, p in enumerate(ps):
        panels.render_keyframe(p, "x", [], tmp_path / f"{i}a.png")
        panels.render_keyframe(dict(p), "x", [], tmp_path / f"{i}b.png")
        a, b = (tmp_path / f"{i}a.png").read_bytes(), (tmp_path / f"{i}b.png").read_bytes()
        assert a == b
        drawn.append(a)
    assert len(set(drawn)) == len(ps)


@pytest.mark.parametrize("shot", ["wide_high", "medium", "medium_two", "medium_close_two",
                                  "close_low", "extreme_close", "dutch"])
def test_candidates_of_a_shot_look_different_at_a_glance(tmp_path, shot):
    """Every two candidates differ visibly over a good part of the picture, seen at a
    contact sheet's size: different takes of one backend, the same take of two backends,
    takes 1 and 4 (which stand on the same third). Takes that differed by grain and hills
    alone (the animatic before candidates) changed at most 4% of it."""
    imgs = {name: draw(tmp_path, cand(name, shot)) for name in CANDIDATES}
    for (a, ia), (b, ib) in itertools.combinations(imgs.items(), 2):
        assert changed_share(ia, ib) > 0.06, (a, b)


@pytest.mark.parametrize("shot", list(SHOTS))
def test_candidates_stand_the_cast_in_different_places(tmp_path, shot):
    """Across a shot's candidates the cast moves between the thirds of the frame, even
    where it is a speck (an extreme wide shot) or seen from above: takes 1 and 2 stand
    it on different thirds."""
    centres = []
    for name in CANDIDATES:
        img = draw(tmp_path, cand(name, shot))
        boxes = [mask(img, panels.character_colour(c)).getbbox() for c in SHOTS[shot][1]]
        assert all(boxes), name
        centres.append(statistics.mean((b[0] + b[2]) / 2 for b in boxes if b))
    assert max(centres) - min(centres) > W / 5


@pytest.mark.parametrize("shot", list(WHOLE))
def test_every_candidate_keeps_the_shot_size_and_the_whole_figure_in_frame(tmp_path, shot):
    """Re-framing changes a figure's height by a few percent at most, and no pose or
    placement crops a hand or a foot."""
    cast, body = SHOTS[shot][1], H * WHOLE[shot]
    for name in [*CANDIDATES, None]:
        img = draw(tmp_path, cand(name, shot, panel={"action": ""}))  # no caption over the feet
        for cid in cast:
            x0, top, x1, feet = figure_box(img, cid)
            assert x0 > 0 and x1 < W and feet < H, (name, cid)
            assert abs((feet - top) - body) <= max(3, 0.07 * body), (name, cid)


def test_every_candidate_of_an_extreme_close_up_shows_a_face(tmp_path):
    chen = panels.character_colour("CHEN")
    for name in CANDIDATES:
        img = draw(tmp_path, cand(name, "extreme_close"))
        face = colour_fraction(img, chen) + colour_fraction(img, panels.mix(chen, (255,) * 3, 0.35))
        assert face > 0.3, name
        x0, _y0, x1, _y1 = mask(img, panels.mix(chen, (255,) * 3, 0.35)).getbbox()
        assert x0 > 0 and x1 < W, name  # the whole face, left to right


@pytest.mark.parametrize("tilt", [-25, 0, 15])
def test_every_candidate_keeps_the_horizon_where_the_camera_puts_it(tmp_path, tilt):
    """Re-framing moves the horizon by at most 2% of the frame; a level camera stays level."""
    expected = H * (0.5 + 0.7 * math.sin(math.radians(tilt)))
    for name in [*CANDIDATES, None]:
        img = draw(tmp_path, cand(name, cast=[], camera={"tilt": tilt}, light=LINES,
                                  style={"grain": 0}))
        rows = [ground_line(img, W * k // 16) for k in range(1, 16)]
        assert max(rows) - min(rows) <= 3, name  # one cell of the world's 3 px grid
        assert abs(statistics.median(rows) - expected) <= 0.025 * H, name


def test_a_dutch_angle_stays_about_as_canted_in_every_candidate(tmp_path):
    for name in [*CANDIDATES, None]:
        img = draw(tmp_path, cand(name, cast=[], camera={"roll": 15}, light=LINES,
                                  style={"grain": 0}))
        left, right = ground_line(img, W // 8), ground_line(img, W * 7 // 8)
        assert 11.5 < math.degrees(math.atan2(left - right, W * 0.75)) < 18.5, name


def test_every_candidate_keeps_the_light_and_the_cast(tmp_path):
    for name in CANDIDATES:
        night = draw(tmp_path, cand(name, "medium_two", light=NIGHT))
        noon = draw(tmp_path, cand(name, "medium_two", light=NOON))
        assert sum(ImageStat.Stat(noon).mean) > sum(ImageStat.Stat(night).mean) + 150, name
        for img in (night, noon):
            for cid in ("CHEN", "BILGEE"):
                assert colour_fraction(img, panels.character_colour(cid), tol=0) > 0.005, name
            assert colour_fraction(img, panels.character_colour("GASMA"), tol=0) == 0
        for key, sign in (("left", 1), ("right", -1)):
            img = draw(tmp_path, cand(name, cast=[], light={"key": key}))
            lq = sum(ImageStat.Stat(img.crop((0, 0, W // 4, H))).mean)
            rq = sum(ImageStat.Stat(img.crop((W * 3 // 4, 0, W, H))).mean)
            assert sign * (lq - rq) > 30, (name, key)


def test_the_header_names_the_candidate(tmp_path):
    """`CAND openai-2` when the step names its candidate, `TAKE 2` when it does not: the
    header's white text ends where that text, set in the panel font, would."""
    size = max(12, round(H * 0.03))
    band, pad = round(size * 1.7), size * 0.6
    for p, text in ((cand("openai-2"), "SC hunt   SHOT chen_watches   CAND openai-2"),
                    (cand(None, take=2), "SC hunt   SHOT chen_watches   TAKE 2")):
        img = draw(tmp_path, p).crop((0, 0, W // 2, band))
        ink = mask(img, (255, 255, 255), tol=40).getbbox()
        assert ink is not None
        assert abs(ink[2] - (pad + fonts.font(size, text).getlength(text))) <= 3, text
