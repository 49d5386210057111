"""The animatic uses what the user gave: a location's picture is the panel's background,
a character's reference shows in the panel, an animal is drawn on four legs and a
creature as no person, and the placeholder voices follow the `voice` words.  Checked
on the pixels and samples a user would see and hear."""

from __future__ import annotations

import statistics
import wave
from pathlib import Path

from conftest import copy_example
from PIL import Image, ImageDraw, ImageOps
from test_panels import H, W, colour_fraction, params

from filmc.backends.local import media, panels, voice
from filmc.compiler.pipeline import compile_film

# ---------------------------------------------------------------- pixels


def reference(path: Path, size: tuple[int, int] = (400, 400)) -> Path:
    """A picture with structure the drawn world never has: a bright disc and diagonal
    bands on a dark ground, square (so fitting it to a 2.39:1 frame must crop it)."""
    img = Image.new("RGB", size, (20, 30, 40))
    d = ImageDraw.Draw(img)
    for i in range(-size[1], size[0], 60):
        d.polygon([(i, 0), (i + 25, 0), (i + 25 + size[1], size[1]), (i + size[1], size[1])],
                  fill=(200, 120, 60))
    d.ellipse((size[0] * 0.55, size[1] * 0.3, size[0] * 0.85, size[1] * 0.6), fill=(250, 250, 240))
    img.save(path)
    return path


def grey(img: Image.Image, box: tuple[int, int, int, int]) -> list[int]:
    """The picture inside `box` (header and caption left out), small and grey."""
    return list(img.crop(box).convert("L").resize((96, 30), Image.Resampling.BILINEAR).tobytes())


BODY = (0, round(H * 0.1), W, round(H * 0.72))  # between the header and the caption


def correlation(panel: Image.Image, ref: Path) -> float:
    fitted = ImageOps.fit(Image.open(ref).convert("RGB"), (W, H), Image.Resampling.BILINEAR)
    return statistics.correlation(grey(panel, BODY), grey(fitted, BODY))


def keyframe(tmp_path: Path, name: str, refs: list[Path] = (), sheets: dict | None = None,
             **over) -> Image.Image:
    out = tmp_path / f"{name}.png"
    panels.render_keyframe(params(**over), "x", list(refs), out, sheets)
    return Image.open(out).convert("RGB")


def test_a_location_picture_is_the_background_of_its_plate_and_its_panels(tmp_path):
    ref = reference(tmp_path / "yurt.png")
    with_picture = keyframe(tmp_path, "with", [ref], cast=[], panel={"backdrop": True})
    drawn = keyframe(tmp_path, "drawn", [ref], cast=[])  # no backdrop: sky and hills
    assert correlation(with_picture, ref) > 0.8
    assert abs(correlation(drawn, ref)) < 0.3
    # a canted camera turns the picture, still covering the frame: no empty corners
    canted = keyframe(tmp_path, "canted", [ref], cast=[], panel={"backdrop": True},
                      camera={"roll": 20})
    corners = [canted.getpixel((x, y)) for x in (1, W - 2) for y in (H // 2,)]
    assert all(sum(c) > 20 for c in corners)
    # the shot's light grades it: a night darkens the same picture
    night = keyframe(tmp_path, "night", [ref], cast=[], panel={"backdrop": True},
                     light={"palette": ["#101a33", "#1b2433", "#a9c1e8", "#05080f"],
                            "brightness": 0.4, "key": "left"})
    assert statistics.mean(grey(night, BODY)) < 0.6 * statistics.mean(grey(with_picture, BODY))
    plate = tmp_path / "plate.png"
    panels.render_plate({"width": W, "height": H, "panel": {"location": "YURT"}}, "a yurt",
                        [ref], plate)
    fitted = ImageOps.fit(Image.open(ref).convert("RGB"), (W, H), Image.Resampling.BILINEAR)
    whole = (0, 0, W, H)  # bare: no header or caption burnt into what panels are set on
    assert statistics.correlation(grey(Image.open(plate).convert("RGB"), whole),
                                  grey(fitted, whole)) > 0.95


def figure_box(img: Image.Image, rgb: tuple[int, int, int]) -> tuple[int, int]:
    """Width and height of the figure in `rgb`: the tallest run of rows holding that
    colour (its label, above it, is a run of its own), and those rows' columns."""
    mask = Image.new("L", img.size, 0)
    px, m = img.load(), mask.load()
    for y in range(img.height):
        for x in range(img.width):
            if all(abs(a - b) <= 2 for a, b in zip(px[x, y], rgb)):
                m[x, y] = 255
    rows = [y for y in range(img.height) if mask.crop((0, y, img.width, y + 1)).getbbox()]
    runs: list[list[int]] = []
    for y in rows:
        if runs and y == runs[-1][-1] + 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    run = max(runs, key=len)
    box = mask.crop((0, run[0], img.width, run[-1] + 1)).getbbox()
    assert box is not None
    return box[2] - box[0], len(run)


def test_an_animal_stands_on_four_legs_wider_than_tall_unlike_a_person(tmp_path):
    colour = panels.character_colour("ALPHA")
    calm = {"style": {"palette": [], "grain": 0.0, "saturation": 1.0}}
    aw, ah = figure_box(keyframe(tmp_path, "wolf", cast=["ALPHA"], kind={"ALPHA": "animal"},
                                 **calm), colour)
    pw, ph = figure_box(keyframe(tmp_path, "man", cast=["ALPHA"], **calm), colour)
    assert aw > 1.4 * ah  # a quadruped's silhouette
    assert pw < 0.8 * ph  # a person's
    assert ah < 0.7 * ph  # to its shoulder, half a person's height
    # a creature is neither: its silhouette differs from the person's and the animal's
    cw, ch = figure_box(keyframe(tmp_path, "thing", cast=["ALPHA"], kind={"ALPHA": "creature"},
                                 **calm), colour)
    assert 0.5 < cw / ch < 1.2 and abs(cw / ch - pw / ph) > 0.2
    # from overhead too, and in close-up the wolf's head fills the frame in its colour
    over = keyframe(tmp_path, "over", cast=["ALPHA"], kind={"ALPHA": "animal"},
                    camera={"overhead": 1}, **calm)
    assert colour_fraction(over, colour) > 0.002
    close = keyframe(tmp_path, "close", cast=["ALPHA"], kind={"ALPHA": "animal"},
                     camera={"scale": 1.6}, **calm)
    assert colour_fraction(close, colour) > 0.15


def test_an_animal_sheet_is_drawn_as_one(tmp_path):
    colour = panels.character_colour("ALPHA")
    out = {}
    for kind in ("animal", "person"):
        out[kind] = tmp_path / f"{kind}.png"
        panels.render_sheet({"width": 512, "height": 512, "character": "ALPHA",
                             "panel": {"character": "ALPHA", "kind": kind}}, "wolf", [],
                            out[kind])
    aw, ah = figure_box(Image.open(out["animal"]).convert("RGB"), colour)
    assert aw > 1.4 * ah


def solid(path: Path, rgb: tuple[int, int, int]) -> Path:
    Image.new("RGB", (320, 134), rgb).save(path)
    return path


def test_a_character_reference_is_shown_in_the_panel_labelled(tmp_path):
    face = solid(tmp_path / "chen.png", (255, 0, 255))
    coat = solid(tmp_path / "chen_winter.png", (0, 255, 255))
    sheets = {("CHEN", None): face, ("CHEN", "winter"): coat}
    plain = keyframe(tmp_path, "plain", sheets=sheets)
    shown = keyframe(tmp_path, "shown", sheets=sheets, insets={"CHEN": None})
    worn = keyframe(tmp_path, "worn", sheets=sheets, insets={"CHEN": "winter"})
    assert colour_fraction(plain, (255, 0, 255)) == 0
    assert colour_fraction(shown, (255, 0, 255)) > 0.02  # the face sheet, in the panel
    assert colour_fraction(worn, (0, 255, 255)) > 0.02  # the outfit's, not the face's
    assert colour_fraction(worn, (255, 0, 255)) == 0
    # framed and labelled in the character's colour: more of it than the figure alone
    chen = panels.character_colour("CHEN")
    assert colour_fraction(shown, chen) > colour_fraction(plain, chen) + 0.002
    # in the top-left corner, under the header
    corner = shown.crop((0, 0, W // 2, H // 2))
    assert colour_fraction(corner, (255, 0, 255)) > 4 * 0.02


def test_the_render_worker_passes_the_plate_and_the_sheets_by_whom_they_show(tmp_path):
    """What the local adapter sends a worker: (role, path, label, character, outfit)."""
    from filmc.backends.local import render

    ref = reference(tmp_path / "steppe.png")
    face = solid(tmp_path / "chen.png", (255, 0, 255))
    inputs = [["character", str(face), None, "CHEN", None],
              ["character", str(solid(tmp_path / "w.png", (0, 255, 255))), None, "CHEN", "winter"],
              ["location", str(ref), None, None, None]]
    spec = {**params(insets={"CHEN": None}, panel={"backdrop": True}, cast=[])}
    (tmp_path / "work").mkdir()
    out = render.render("keyframe", spec, "x", inputs, str(tmp_path / "work"))
    panel = Image.open(out["image"][0]).convert("RGB")
    assert colour_fraction(panel, (255, 0, 255)) > 0.02
    assert colour_fraction(panel, (0, 255, 255)) == 0
    assert correlation(panel, ref) > 0.6  # the inset covers a corner of it


# ---------------------------------------------------------------- the compiler's part


def test_the_example_gives_the_animatic_its_wolf_its_references_and_its_plates(tmp_path):
    project = copy_example(tmp_path / "wolfpack")
    g = compile_film(project / "film.film", offline=True).graph
    assert g is not None
    kf = {n: d["step"] for n, d in g.nodes(data=True) if d["kind"] == "keyframe"}
    alpha = [s for s in kf.values() if "ALPHA" in s.params["cast"]]
    assert alpha and all(s.params["kind"] == {"ALPHA": "animal"} for s in alpha)
    assert all("kind" not in s.params for s in kf.values() if "ALPHA" not in s.params["cast"])
    # CHEN has his own picture, and one in his winter coat; BATU has none
    assert kf["keyframe.hunt.chen_watches.local-1"].params["insets"] == {"CHEN": "winter"}
    assert all("BATU" not in s.params.get("insets", {}) for s in kf.values())
    # the steppe and the yurt have pictures: their shots are set against them; the lake
    # has none and is drawn
    located = {s.params["panel"]["location"]: s.params["panel"].get("backdrop") for s in kf.values()}
    assert located == {"STEPPE": True, "YURT": True, "LAKE": None}


def test_the_kind_of_a_character_keys_only_the_animatic(tmp_path):
    """`kind` is for the animatic alone (the look already says "grey wolf"): taking it off
    the wolf re-keys no step of a service, and only the wolf's panels offline."""
    project = copy_example(tmp_path / "wolfpack")

    def keys(offline: bool) -> dict[str, str]:
        g = compile_film(project / "film.film", offline=offline).graph
        assert g is not None
        return {n: d["step"].key for n, d in g.nodes(data=True)}

    paid, local = keys(False), keys(True)
    cast = project / "cast.film"
    cast.write_text(cast.read_text(encoding="utf-8").replace("  kind animal\n", ""),
                    encoding="utf-8")
    assert keys(False) == paid  # openai and comfyui keyframes, and every other step
    g = compile_film(project / "film.film", offline=True).graph
    assert g is not None
    after = {n: d["step"].key for n, d in g.nodes(data=True)}
    moved = {n for n in local if local[n] != after[n]}
    wolf = {n for n, d in g.nodes(data=True) if d["kind"] == "keyframe" and "ALPHA" in d["characters"]}
    assert wolf and {n for n in moved if g.nodes[n]["kind"] == "keyframe"} == wolf


# ---------------------------------------------------------------- voices


def pitch(path: Path) -> float:
    """The median fundamental (Hz) of a WAV's voiced 40 ms windows, by autocorrelation."""
    with wave.open(str(path)) as f:
        rate = f.getframerate()
        raw = f.readframes(f.getnframes())
    x = [int.from_bytes(raw[i:i + 2], "little", signed=True) for i in range(0, len(raw), 2)]
    x = x[::4]  # 12 kHz is plenty for voices under 500 Hz
    rate //= 4
    win = round(rate * 0.04)
    windows = [x[s:s + win] for s in range(0, len(x) - win, win)]
    voiced = [w for w in windows if max(abs(v) for v in w) >= 1500]  # not a pause or an edge
    found = []
    for w in voiced[::max(1, len(voiced) // 12)]:
        best = max(range(rate // 500, rate // 60),
                   key=lambda lag: sum(a * b for a, b in zip(w, w[lag:])) / (win - lag))
        found.append(rate / best)
    return statistics.median(found)


def say(tmp_path: Path, name: str, voice: str, speaker: str = "X", text: str = "") -> Path:
    out = tmp_path / f"{name}.wav"
    media.render_speech({"text": text or "We ride to the ridge at dawn.",
                         "speaker": speaker, "voice": voice}, out)
    return out


def test_a_childs_voice_is_higher_than_a_womans_and_hers_than_a_mans(tmp_path):
    child = pitch(say(tmp_path, "child", "a small boy, excited"))
    woman = pitch(say(tmp_path, "woman", "warm woman's voice"))
    man = pitch(say(tmp_path, "man", "a man, calm"))
    old = pitch(say(tmp_path, "old", "old man, deep and gravelly"))
    assert child > 1.2 * woman
    assert woman > 1.5 * man
    assert old < 0.9 * man
    # in Chinese too
    zh = [pitch(say(tmp_path, n, v, text="我们赶到山脊")) for n, v in
          (("zh_child", "小女孩"), ("zh_woman", "中年女人"), ("zh_man", "男人，平静"))]
    assert zh[0] > 1.2 * zh[1] and zh[1] > 1.5 * zh[2]


def test_voices_are_deterministic_and_a_slow_voice_takes_longer(tmp_path):
    a, b = say(tmp_path, "a", "old woman, slow"), say(tmp_path, "b", "old woman, slow")
    assert a.read_bytes() == b.read_bytes()
    # two men differ a little, by name
    assert voice.choose("man", "BATU", "en", "") != voice.choose("man", "CHEN", "en", "")

    slow, fast = say(tmp_path, "slow", "man, slow"), say(tmp_path, "fast", "man, fast, terse")
    with wave.open(str(slow)) as s, wave.open(str(fast)) as f:
        assert s.getnframes() > 1.3 * f.getnframes()  # eSpeak's real length, said slower
