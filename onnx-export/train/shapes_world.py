"""The shapes world: coloured shapes rendered with PIL, their English captions, Spanish translations,
question/answer pairs, and a pixel-level judge (dominant colour + shape by fill ratio) that reads an
image back without any model. numpy + PIL only, so the C# tests' inputs can be made anywhere."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

SIZE = 64
SHAPES = ["circle", "square", "triangle", "star"]
COLOURS = {"red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (240, 220, 20),
           "green": (30, 170, 50), "blue": (30, 70, 230), "purple": (140, 50, 190)}
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128)}
SIZES = {"small": 9.0, "large": 18.0}           # outer radius in pixels at SIZE=64
SUPERSAMPLE = 4

# Spanish: noun, gender; adjectives by gender (m, f)
ES_SHAPE = {"circle": ("círculo", "m"), "square": ("cuadrado", "m"), "triangle": ("triángulo", "m"), "star": ("estrella", "f")}
ES_COLOUR = {"red": ("rojo", "roja"), "orange": ("naranja", "naranja"), "yellow": ("amarillo", "amarilla"),
             "green": ("verde", "verde"), "blue": ("azul", "azul"), "purple": ("morado", "morada")}
ES_SIZE = {"small": ("pequeño", "pequeña"), "large": ("grande", "grande")}
ES_BG = {"white": "blanco", "black": "negro", "grey": "gris"}


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    x: float        # centre, pixels
    y: float


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple  # of Obj, one or two (different shape and colour)


def _polygon(shape: str, cx: float, cy: float, r: float):
    if shape == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx + r * math.cos(math.radians(a)), cy - r * math.sin(math.radians(a))) for a in (90, 210, 330)]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = math.radians(90 + 36 * k)
            pts.append((cx + rr * math.cos(a), cy - rr * math.sin(a)))
        return pts
    raise ValueError(shape)


def render(scene: Scene, size: int = SIZE):
    """The scene as a size x size RGB PIL image (supersampled, box-filtered edges)."""
    from PIL import Image, ImageDraw
    s = SUPERSAMPLE * size / SIZE
    img = Image.new("RGB", (size * SUPERSAMPLE,) * 2, BACKGROUNDS[scene.background])
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        cx, cy, r = o.x * s, o.y * s, SIZES[o.size] * s
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            d.polygon(_polygon(o.shape, cx, cy, r), fill=fill)
    return img.resize((size, size), Image.BOX)


def random_scene(rng: random.Random, two_prob: float = 0.25) -> Scene:
    bg = rng.choice(list(BACKGROUNDS))
    first = _random_obj(rng, None)
    objs = [first]
    if rng.random() < two_prob:
        for _ in range(50):
            o = _random_obj(rng, first, size="small" if first.size == "large" else rng.choice(list(SIZES)))
            if math.hypot(o.x - first.x, o.y - first.y) > SIZES[o.size] + SIZES[first.size] + 3:
                objs.append(o)
                break
    return Scene(bg, tuple(objs))


def _random_obj(rng: random.Random, other: Obj | None, size: str | None = None) -> Obj:
    shapes = [s for s in SHAPES if other is None or s != other.shape]
    colours = [c for c in COLOURS if other is None or c != other.colour]
    size = size or rng.choice(list(SIZES))
    r = SIZES[size]
    lo, hi = r + 2, SIZE - r - 2
    return Obj(rng.choice(shapes), rng.choice(colours), size, rng.uniform(lo, hi), rng.uniform(lo, hi))


def _phrase(o: Obj) -> str:
    return f"a {o.size} {o.colour} {o.shape}"


def caption(scene: Scene) -> str:
    """'a small red circle on a grey background' / 'a large blue star and a small red circle on a black background'."""
    return " and ".join(_phrase(o) for o in scene.objects) + f" on a {scene.background} background"


def caption_es(scene: Scene) -> str:
    parts = []
    for o in scene.objects:
        noun, g = ES_SHAPE[o.shape]
        i = 0 if g == "m" else 1
        parts.append(f"{'un' if g == 'm' else 'una'} {noun} {ES_COLOUR[o.colour][i]} {ES_SIZE[o.size][i]}")
    return " y ".join(parts) + f" sobre un fondo {ES_BG[scene.background]}"


def questions(scene: Scene):
    """(question, answer) pairs answerable from the scene alone."""
    qa = [("What colour is the background?", scene.background),
          ("How many shapes are there?", "one" if len(scene.objects) == 1 else "two")]
    for o in scene.objects:
        qa += [(f"What colour is the {o.shape}?", o.colour), (f"What shape is the {o.colour} object?", o.shape),
               (f"How big is the {o.shape}?", o.size), (f"Is there a {o.shape}?", "yes")]
    if len(scene.objects) == 1:
        o = scene.objects[0]
        qa += [("What shape is it?", o.shape), ("What colour is it?", o.colour), ("What colour is the shape?", o.colour)]
    present = {o.shape for o in scene.objects}
    qa += [(f"Is there a {s}?", "no") for s in SHAPES if s not in present]
    return qa


def imagine_prompt(rng: random.Random, scene: Scene) -> str:
    """A prompt for a one-object scene, from terse ('a red triangle') to the full caption."""
    o = scene.objects[0]
    forms = [f"a {o.colour} {o.shape}", f"a {o.size} {o.colour} {o.shape}", caption(scene),
             f"a {o.colour} {o.shape} on a {scene.background} background"]
    p = rng.choice(forms)
    return p[0].upper() + p[1:] if rng.random() < 0.5 else p


def commands():
    """Short spoken commands (speech training only), with Spanish targets."""
    out = []
    for o in SHAPES:
        noun, g = ES_SHAPE[o]
        art = "un" if g == "m" else "una"
        for c in COLOURS:
            col = ES_COLOUR[c][0 if g == "m" else 1]
            out.append((f"draw a {c} {o}", f"dibuja {art} {noun} {col}"))
        out.append((f"what colour is the {o}", f"de qué color es {'el' if g == 'm' else 'la'} {noun}"))
    out += [("describe the picture", "describe la imagen"), ("what shape is it", "qué forma es"),
            ("how many shapes are there", "cuántas formas hay")]
    return out


# ---------------------------------------------------------------- judge (no model involved)

def _nearest(rgb: np.ndarray, table: dict) -> np.ndarray:
    names = list(table)
    ref = np.array([table[n] for n in names], np.float32)
    d = ((rgb[..., None, :].astype(np.float32) - ref) ** 2).sum(-1)
    return d.argmin(-1), d.min(-1)


def judge(pixels) -> dict:
    """Reads an RGB image (PIL image or HxWx3 uint8 array) back into background, dominant colour and
    shape. Background: the palette colour nearest the border pixels' median. Object: pixels nearer a
    shape colour than the background; the most frequent such colour wins. Shape from the fill ratio
    of that colour's pixels within their bounding box (stray pixels with fewer than two 4-neighbours
    dropped): square > 0.9, circle > 0.7; below that the share of pixels in the box's lower half
    tells an upright triangle (0.63..0.74 on renders) from a star (0.43..0.57)."""
    a = np.asarray(pixels, dtype=np.uint8)[..., :3]
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).astype(np.float32)
    bg_idx, _ = _nearest(np.median(border, axis=0)[None], BACKGROUNDS)
    background = list(BACKGROUNDS)[int(bg_idx[0])]
    bg_rgb = np.array(BACKGROUNDS[background], np.float32)
    col_idx, col_d = _nearest(a, COLOURS)
    bg_d = ((a.astype(np.float32) - bg_rgb) ** 2).sum(-1)
    fg = col_d < bg_d * 0.5
    if fg.sum() < 8:
        return {"background": background, "colour": None, "shape": None, "fill": 0.0, "pixels": int(fg.sum())}
    counts = np.bincount(col_idx[fg], minlength=len(COLOURS))
    colour = list(COLOURS)[int(counts.argmax())]
    mask = fg & (col_idx == counts.argmax())
    # drop stray pixels: keep those with at least two 4-neighbours in the mask
    m = np.pad(mask, 1)
    neighbours = m[:-2, 1:-1].astype(int) + m[2:, 1:-1] + m[1:-1, :-2] + m[1:-1, 2:]
    core = mask & (neighbours >= 2)
    if core.sum() >= 8:
        mask = core
    ys, xs = np.nonzero(mask)
    height = ys.max() - ys.min() + 1
    box = float((xs.max() - xs.min() + 1) * height)
    fill = float(mask.sum() / box)
    bottom = float((ys >= ys.max() + 1 - height / 2).sum() / len(ys))   # share of pixels in the lower half
    if fill > 0.9:
        shape = "square"
    elif fill > 0.7:
        shape = "circle"
    else:                   # an upright triangle keeps ~70% of its pixels in the lower half, a star ~50%
        shape = "triangle" if bottom > 0.6 else "star"
    return {"background": background, "colour": colour, "shape": shape, "fill": round(fill, 3), "bottom": round(bottom, 3),
            "pixels": int(mask.sum())}


def parse_caption(text: str) -> dict:
    """The first shape and colour words named in a caption (English), or None."""
    words = text.lower().replace(",", " ").replace(".", " ").split()
    return {"shape": next((w for w in words if w in SHAPES), None),
            "colour": next((w for w in words if w in COLOURS), None),
            "background": next((words[i - 1] for i, w in enumerate(words) if w == "background" and i > 0), None)}
