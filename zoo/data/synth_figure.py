"""Person-like figures for the synthetic dataset: a body drawn from polygons and ellipses, dressed
in garments whose shape tells their category (and some attributes) apart.

Every garment of an attribute-carrying category (shirt, t-shirt, pants, skirt, dress) is annotated
with the iMaterialist 2019 attributes that its drawing shows: the textile pattern (plain, stripe,
check, dot; the noisy fabric has none), the length of skirts and dresses (mini, knee, maxi: where
the hem is drawn), bell-bottom or straight pants (the width at the ankle), single-breasted
shirts (the buttons), and the constant silhouettes (a-line skirts, symmetrical t-shirts). The
iMaterialist 2019 vocabulary has no sleeve-length or neckline-type attribute, so the sleeves and
V or round necklines drawn are told apart by category and shape only.

A figure is a list of :class:`Layer` objects in drawing order. A layer is a union of primitives
painted with one :class:`Paint`; annotated layers carry an iMaterialist category id. Parts
(sleeve, pocket, neckline) name their garment as ``parent``: a layer hides what was drawn before
it except its own ancestors, which is how a sleeve overlaps its top instead of cutting a hole in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# iMaterialist 2019 category ids used by the synthetic scenes (a small vocabulary a small model
# can learn on a CPU).
SHIRT, TSHIRT, PANTS, SHORTS, SKIRT, DRESS = 0, 1, 6, 7, 8, 10
GLASSES, HAT, SHOE, BAG, SLEEVE, POCKET, NECKLINE = 13, 14, 23, 24, 31, 32, 33
# Attribute ids (label_descriptions.json) tied to what is drawn, so they are learnable too.
PATTERN_ATTRIBUTE = {"plain": 61, "stripes": 72, "checks": 66, "dots": 67}
LENGTH_ATTRIBUTE = {"mini": 3, "knee": 5, "maxi": 8}
SINGLE_BREASTED, STRAIGHT, BELL_BOTTOM, A_LINE, SYMMETRICAL = 10, 33, 29, 34, 20

Point = tuple[float, float]
Primitive = tuple  # ("poly", [points]) | ("ellipse", (x0, y0, x1, y1)) | ("line", [points], width)


@dataclass
class Paint:
    """How a layer is coloured: a pattern of two colours with a period in pixels."""

    pattern: str  # plain, stripes, checks, dots, noise
    color: tuple[int, int, int]
    color2: tuple[int, int, int] = (0, 0, 0)
    period: float = 6.0
    angle: float = 0.0  # stripes: 0 horizontal, 90 vertical, else diagonal


@dataclass(eq=False)
class Layer:
    shapes: list[Primitive]
    paint: Paint
    category: Optional[int] = None  # None: skin, hair, decoration, clutter (not annotated)
    attributes: tuple[int, ...] = ()
    parent: Optional["Layer"] = None
    mask: Optional[np.ndarray] = field(default=None, repr=False)  # visible pixels, set when drawn

    def ancestors(self) -> set[int]:
        out, node = set(), self.parent
        while node is not None:
            out.add(id(node))
            node = node.parent
        return out


def random_color(rng: np.random.Generator, dark: bool = False) -> tuple[int, int, int]:
    hi = 110 if dark else 255
    return tuple(int(v) for v in rng.integers(10, hi, 3))


def darker(color: tuple[int, int, int], f: float = 0.6) -> tuple[int, int, int]:
    return tuple(int(c * f) for c in color)


def garment_paint(rng: np.random.Generator, unit: float) -> Paint:
    pattern = str(rng.choice(["plain", "stripes", "checks", "dots", "noise"], p=[0.3, 0.25, 0.2, 0.1, 0.15]))
    return Paint(pattern, random_color(rng), random_color(rng), period=max(2.0, unit * rng.uniform(0.02, 0.05)),
                 angle=float(rng.choice([0.0, 90.0, 45.0, -45.0])))


def lerp(p: Point, q: Point, t: float) -> Point:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


def limb(p: Point, q: Point, w1: float, w2: float) -> Primitive:
    """A quadrilateral around segment p->q, ``w1`` wide at p and ``w2`` at q."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    norm = max(np.hypot(dx, dy), 1e-6)
    nx, ny = -dy / norm, dx / norm
    return ("poly", [(p[0] + nx * w1 / 2, p[1] + ny * w1 / 2), (q[0] + nx * w2 / 2, q[1] + ny * w2 / 2),
                     (q[0] - nx * w2 / 2, q[1] - ny * w2 / 2), (p[0] - nx * w1 / 2, p[1] - ny * w1 / 2)])


def ellipse(cx: float, cy: float, rx: float, ry: float) -> Primitive:
    return ("ellipse", (cx - rx, cy - ry, cx + rx, cy + ry))


@dataclass
class Body:
    """Key points of a standing figure ``u`` pixels tall whose head top is at ``(cx, y0)``."""

    cx: float
    y0: float
    u: float
    rng: np.random.Generator

    def __post_init__(self) -> None:
        u, cx, r = self.u, self.cx, self.rng
        self.ys, self.sw = self.y0 + 0.17 * u, r.uniform(0.10, 0.13) * u  # shoulders
        self.yw, self.ww = self.y0 + 0.42 * u, r.uniform(0.075, 0.09) * u  # waist
        self.yh, self.hw = self.y0 + 0.52 * u, r.uniform(0.095, 0.115) * u  # hips
        self.ya = self.y0 + 0.93 * u  # ankles
        swing = [r.uniform(0.015, 0.08) * u for _ in range(2)]
        self.shoulders = [(cx + s * (self.sw - 0.012 * u), self.ys + 0.02 * u) for s in (-1, 1)]
        self.hands = [(cx + s * (self.sw + w), self.y0 + 0.55 * u) for s, w in zip((-1, 1), swing)]
        spread = r.uniform(0.03, 0.09) * u
        self.hips = [(cx + s * 0.05 * u, self.yh - 0.02 * u) for s in (-1, 1)]
        self.ankles = [(cx + s * spread, self.ya) for s in (-1, 1)]

    def torso(self, bottom: float) -> Primitive:
        cx = self.cx
        return ("poly", [(cx - self.sw, self.ys), (cx + self.sw, self.ys), (cx + self.ww, self.yw),
                         (cx + self.hw, bottom), (cx - self.hw, bottom), (cx - self.ww, self.yw)])

    def arm(self, side: int, t: float = 1.0, extra: float = 0.0) -> Primitive:
        p, q = self.shoulders[side], self.hands[side]
        return limb(p, lerp(p, q, t), (0.055 + extra) * self.u, (0.042 + extra) * self.u)


def limb_layers(body: Body, skin: tuple[int, int, int]) -> tuple[Layer, Layer]:
    """Bare legs (drawn behind everything) and arms with hands (drawn in front of the bottoms)."""
    u = body.u
    legs = Layer([limb(h, a, 0.085 * u, 0.05 * u) for h, a in zip(body.hips, body.ankles)], Paint("plain", skin))
    arms = Layer([body.arm(0), body.arm(1)] + [ellipse(*h, 0.025 * u, 0.03 * u) for h in body.hands],
                 Paint("plain", skin))
    return legs, arms


def head_layers(body: Body, skin: tuple[int, int, int], hair: tuple[int, int, int]) -> list[Layer]:
    u, cx, y0 = body.u, body.cx, body.y0
    neck = Layer([("poly", [(cx - 0.025 * u, y0 + 0.1 * u), (cx + 0.025 * u, y0 + 0.1 * u),
                            (cx + 0.03 * u, body.ys + 0.01 * u), (cx - 0.03 * u, body.ys + 0.01 * u)])],
                 Paint("plain", skin))
    hair_layer = Layer([ellipse(cx, y0 + 0.055 * u, 0.058 * u, 0.058 * u)], Paint("noise", hair, darker(hair), 2))
    face = Layer([ellipse(cx, y0 + 0.075 * u, 0.048 * u, 0.06 * u)], Paint("plain", skin))
    return [neck, hair_layer, face]


def bottom_garment(body: Body, rng: np.random.Generator) -> list[Layer]:
    """Pants, shorts or a skirt, with attributes on some and a pocket on some pants."""
    u, cx = body.u, body.cx
    paint = garment_paint(rng, u)
    kind = str(rng.choice(["pants", "shorts", "skirt"], p=[0.45, 0.2, 0.35]))
    hip_block = ("poly", [(cx - body.ww * 1.05, body.yw), (cx + body.ww * 1.05, body.yw),
                          (cx + body.hw * 1.05, body.yh + 0.04 * u), (cx - body.hw * 1.05, body.yh + 0.04 * u)])
    attrs: list[int] = []
    if kind == "skirt":
        length = str(rng.choice(list(LENGTH_ATTRIBUTE)))
        hem = {"mini": body.yh + 0.1 * u, "knee": body.yh + 0.24 * u, "maxi": body.ya - 0.02 * u}[length]
        flare = rng.uniform(0.02, 0.08) * u + (hem - body.yw) * 0.25
        shape = [("poly", [(cx - body.ww, body.yw), (cx + body.ww, body.yw), (cx + body.hw + flare, hem),
                           (cx - body.hw - flare, hem)])]
        category, attrs = SKIRT, [LENGTH_ATTRIBUTE[length], A_LINE]
    else:
        bell = kind == "pants" and rng.random() < 0.35
        t = 1.0 if kind == "pants" else 0.4
        ends = [lerp(h, a, t) for h, a in zip(body.hips, body.ankles)]
        bottom_w = (0.11 if bell else 0.065) * u if kind == "pants" else 0.085 * u
        shape = [hip_block] + [limb(h, e, 0.1 * u, bottom_w) for h, e in zip(body.hips, ends)]
        category = PANTS if kind == "pants" else SHORTS
        if kind == "pants":
            attrs = [BELL_BOTTOM if bell else STRAIGHT]
    if paint.pattern in PATTERN_ATTRIBUTE:
        attrs.append(PATTERN_ATTRIBUTE[paint.pattern])
    rng.random()  # drawn as it always was, so the images stay the same; every garment keeps its attributes
    garment = Layer(shape, paint, category, tuple(sorted(attrs)))
    layers = [garment]
    if category in (PANTS, SHORTS) and rng.random() < 0.4:
        side = float(rng.choice([-1.0, 1.0]))
        px, py = cx + side * body.hw * 0.55, body.yw + 0.03 * u
        pocket = ("poly", [(px - 0.035 * u, py), (px + 0.035 * u, py), (px + 0.03 * u, py + 0.06 * u),
                           (px - 0.03 * u, py + 0.06 * u)])
        layers.append(Layer([pocket], Paint(paint.pattern, darker(paint.color, 0.7), darker(paint.color2, 0.7),
                                            paint.period, paint.angle), POCKET, parent=garment))
    return layers


def top_garment(body: Body, rng: np.random.Generator, skin: tuple[int, int, int], dress: bool) -> list[Layer]:
    """A t-shirt (short sleeves), a shirt (long sleeves, buttons) or a dress, with its parts."""
    u, cx = body.u, body.cx
    paint = garment_paint(rng, u)
    if dress:
        category = DRESS
        length = str(rng.choice(list(LENGTH_ATTRIBUTE)))
        hem = {"mini": body.yh + 0.12 * u, "knee": body.yh + 0.26 * u, "maxi": body.ya - 0.01 * u}[length]
        flare = (hem - body.yw) * rng.uniform(0.2, 0.4)
        shapes = [body.torso(body.yw + 0.01 * u),
                  ("poly", [(cx - body.ww, body.yw), (cx + body.ww, body.yw), (cx + body.hw + flare, hem),
                            (cx - body.hw - flare, hem)])]
        sleeve_t = float(rng.choice([0.0, 0.35, 1.0], p=[0.3, 0.45, 0.25]))
        attrs = [LENGTH_ATTRIBUTE[length]]
    else:
        category = SHIRT if rng.random() < 0.4 else TSHIRT
        shapes = [body.torso(body.yh + rng.uniform(-0.04, 0.04) * u)]
        sleeve_t = 1.0 if category == SHIRT else rng.uniform(0.3, 0.45)
        attrs = [SINGLE_BREASTED] if category == SHIRT else [SYMMETRICAL]
    if paint.pattern in PATTERN_ATTRIBUTE:
        attrs.append(PATTERN_ATTRIBUTE[paint.pattern])
    sleeves = [body.arm(side, sleeve_t, extra=0.012) for side in (0, 1)] if sleeve_t > 0 else []
    rng.random()  # as in bottom_garment: the draw stays, the attributes are never dropped
    garment = Layer(shapes + sleeves, paint, category, tuple(sorted(attrs)))
    layers = [garment]
    # Sleeves share the garment's fabric: the model must tell them apart by where they are.
    layers += [Layer([sleeve], paint, SLEEVE, parent=garment) for sleeve in sleeves]
    if category == SHIRT:
        buttons = [ellipse(cx, body.ys + k * 0.06 * u, 0.008 * u, 0.008 * u) for k in range(1, 5)]
        layers.append(Layer(buttons, Paint("plain", darker(paint.color, 0.4)), parent=garment))
    if rng.random() < 0.6:
        layers += neckline(body, garment, skin, rng)
    if not dress and rng.random() < 0.25:
        px, py = cx - body.sw * 0.45, body.ys + 0.06 * u
        layers.append(Layer([("poly", [(px - 0.03 * u, py), (px + 0.03 * u, py), (px + 0.03 * u, py + 0.05 * u),
                                       (px - 0.03 * u, py + 0.05 * u)])],
                            Paint("plain", darker(paint.color, 0.65)), POCKET, parent=garment))
    return layers


def neckline(body: Body, garment: Layer, skin: tuple[int, int, int], rng: np.random.Generator) -> list[Layer]:
    """A V or round opening: bare skin inside (hides the garment), a trim band (the neckline)."""
    u, cx, ys = body.u, body.cx, body.ys
    half, depth, band = 0.045 * u, rng.uniform(0.05, 0.1) * u, max(0.018 * u, 1.5)
    if rng.random() < 0.5:  # V neck
        outer = [(cx - half, ys), (cx, ys + depth), (cx + half, ys)]
    else:  # round neck, a sampled half-ellipse
        angles = np.linspace(np.pi, 0, 9)
        outer = [(cx + half * np.cos(a), ys + depth * np.sin(a)) for a in angles]
    inner = [(cx + (x - cx) * (half - band) / half, ys + (y - ys) * max(depth - band, 1) / depth) for x, y in outer]
    opening = Layer([("poly", outer)], Paint("plain", skin))
    trim = Layer([("poly", outer + inner[::-1])], Paint("plain", random_color(rng)), NECKLINE, parent=garment)
    return [opening, trim]


def accessories_feet(body: Body, rng: np.random.Generator) -> list[Layer]:
    u = body.u
    color = random_color(rng, dark=True)
    return [Layer([ellipse(a[0] + s * 0.018 * u, body.ya + 0.03 * u, 0.045 * u, 0.026 * u),
                   ellipse(a[0], body.ya + 0.01 * u, 0.03 * u, 0.025 * u)], Paint("plain", color), SHOE)
            for s, a in zip((-1, 1), body.ankles)]


def accessories_top(body: Body, rng: np.random.Generator) -> list[Layer]:
    """Bag (with its strap), hat and glasses, each on some figures."""
    u, cx, y0 = body.u, body.cx, body.y0
    layers = []
    if rng.random() < 0.4:
        side = float(rng.choice([-1.0, 1.0]))
        bx, by = cx + side * (body.hw + 0.03 * u), body.yh - 0.06 * u
        w, h = rng.uniform(0.05, 0.08) * u, rng.uniform(0.05, 0.09) * u
        strap_from = (cx - side * body.sw * 0.6, body.ys)
        layers.append(Layer([("poly", [(bx - w, by), (bx + w, by), (bx + w, by + h), (bx - w, by + h)]),
                             ("line", [strap_from, (bx, by)], max(1, int(0.014 * u)))],
                            garment_paint(rng, u), BAG))
    if rng.random() < 0.3:
        brim = ellipse(cx, y0 + 0.02 * u, rng.uniform(0.07, 0.1) * u, 0.018 * u)
        crown = ("poly", [(cx - 0.045 * u, y0 + 0.02 * u), (cx - 0.04 * u, y0 - 0.04 * u),
                          (cx + 0.04 * u, y0 - 0.04 * u), (cx + 0.045 * u, y0 + 0.02 * u)])
        layers.append(Layer([brim, crown], Paint("plain", random_color(rng)), HAT))
    if rng.random() < 0.3:
        ey = y0 + 0.068 * u
        lenses = [ellipse(cx + s * 0.022 * u, ey, 0.018 * u, 0.013 * u) for s in (-1, 1)]
        bridge = ("line", [(cx - 0.01 * u, ey), (cx + 0.01 * u, ey)], max(1, int(0.006 * u)))
        layers.append(Layer(lenses + [bridge], Paint("plain", random_color(rng, dark=True)), GLASSES))
    return layers


def person_layers(rng: np.random.Generator, cx: float, y0: float, u: float) -> list[Layer]:
    """All layers of one dressed figure, in drawing order (back to front)."""
    body = Body(cx, y0, u, rng)
    skin = tuple(int(v) for v in np.array([225, 180, 150]) * rng.uniform(0.45, 1.05))
    hair = random_color(rng, dark=True)
    legs, arms = limb_layers(body, skin)
    dress = rng.random() < 0.25
    layers = [legs]
    if not dress:
        layers += bottom_garment(body, rng)
    layers.append(arms)
    layers += top_garment(body, rng, skin, dress)
    layers += head_layers(body, skin, hair)
    layers += accessories_feet(body, rng)
    layers += accessories_top(body, rng)
    return layers
