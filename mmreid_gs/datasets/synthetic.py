"""SyntheticReID: a generated person re-identification benchmark.

The generator draws person-like images whose identity lies in body
proportions, skin/hair colour, upper and lower clothing (type, colour,
pattern) and accessories (hat, shoulder bag, backpack, handbag). Identities
come in *families* of look-alikes that share most attributes and differ in
one or two, so that nearest classes are genuinely hard. Each image varies in
pose (stride, arm swing, position, scale, shear, mirror), view (front/back,
depending on the walking direction and the camera), and is sometimes
partially occluded. Each camera has its own scene and style (background,
colour temperature, gain, gamma, saturation, resolution, blur, noise, JPEG
quality). Domain ``'A'`` uses indoor scenes and mild styles, domain ``'B'``
outdoor scenes, strong colour casts, low saturation, low resolution and blur.
The identity distribution is shared; the people of the two domains differ.

The images are written in the Market-1501 layout, so that
:class:`Market1501` reads them::

    data_root/
        meta.json                 generator version and parameters
        identities.json           attributes and family of every identity
        bounding_box_train/       PPPP_cCsS_FFFFFF_NN.jpg
        query/
        bounding_box_test/

``PPPP`` is the person id, ``C`` the 1-based camera, ``S`` the session (1)
and ``FFFFFF`` the frame number on a clock shared by all cameras: a person
walks along the row of cameras, so that the frame differences between
cameras are plausible transit times (for TLift).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log

from mmreid_gs.registry import DATASETS
from .market1501 import Market1501

try:  # pragma: no cover - platform dependent
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

GENERATOR_NAME = 'mmreid_gs.SyntheticReID'
# Bump whenever the generated images change: trees of another version are
# then regenerated. The demo results of the README were measured with 1.2.
GENERATOR_VERSION = '1.2'
DOMAINS = ('A', 'B')
# Person ids of domain B start after this offset, so that the two domains
# never share an id (4-digit Market-1501 ids).
_PID_OFFSET = {'A': 0, 'B': 5000}
_DOMAIN_CODE = {'A': 1, 'B': 2}
_SPLIT_CODE = {'train': 1, 'test': 2}
_SPLIT_DIRS = ('bounding_box_train', 'query', 'bounding_box_test')

# Clothing palette (RGB) and how often each colour is worn. Dark, grey and
# blue garments dominate, as in real surveillance data.
_PALETTE = np.array([
    (25, 25, 28), (235, 235, 228), (128, 128, 128), (70, 70, 76),
    (30, 40, 90), (50, 90, 180), (140, 180, 220), (180, 30, 40),
    (110, 30, 40), (40, 120, 60), (110, 110, 50), (190, 170, 120),
    (220, 200, 170), (110, 70, 40), (230, 150, 180), (230, 200, 40),
    (230, 120, 30), (110, 60, 140), (30, 130, 130)
], dtype=np.float32) / 255.
_PALETTE_P = np.array([3, 1.5, 2, 2, 2, 1.5, 1, 1, .7, .8, .7, 1, 1, 1, .7,
                       .6, .5, .5, .5])
_PALETTE_P = _PALETTE_P / _PALETTE_P.sum()
_SKIN = np.array([(240, 205, 180), (225, 180, 150), (200, 150, 110),
                  (160, 110, 75), (110, 75, 50)], dtype=np.float32) / 255.
_HAIR = np.array([(20, 18, 18), (60, 40, 25), (110, 75, 40), (200, 170, 100),
                  (150, 60, 30), (160, 160, 160), (120, 40, 110)],
                 dtype=np.float32) / 255.
_HAIR_P = np.array([4, 3, 1.5, 1, .5, .6, .3])
_HAIR_P = _HAIR_P / _HAIR_P.sum()

# Attributes that differ between members of a family of look-alikes, and
# how often each one is the one that differs.
_MUTABLE = ('lower_colour', 'lower_type', 'upper_pattern', 'upper_colour2',
            'hair', 'hat', 'bag', 'shoes', 'upper_type', 'upper_colour')
_MUTABLE_P = np.array([3, 1.5, 2.5, 1.5, 1.5, 1, 2, 1, 1, .6])
_MUTABLE_P = _MUTABLE_P / _MUTABLE_P.sum()


def _rng(seed: int, *keys) -> np.random.Generator:
    """An independent generator for one (seed, keys...) stream."""
    return np.random.default_rng([int(seed)] + [int(k) for k in keys])


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------
def _colour(rng, exclude: Optional[np.ndarray] = None) -> List[float]:
    """A palette colour with a small per-identity jitter (RGB in [0, 1])."""
    while True:
        idx = rng.choice(len(_PALETTE), p=_PALETTE_P)
        base = _PALETTE[idx]
        if exclude is None or np.abs(base - np.asarray(exclude)).max() > .25:
            break
    col = base * rng.uniform(.88, 1.12) + rng.uniform(-.04, .04, 3)
    return np.clip(col, 0, 1).round(4).tolist()


def _upper_pattern(rng) -> Dict:
    kind = rng.choice(['none', 'hstripes', 'vstripes', 'checks', 'logo',
                       'twotone'], p=[.34, .16, .1, .12, .16, .12])
    pat = dict(kind=str(kind), period=float(rng.uniform(.035, .07)),
               duty=float(rng.uniform(.3, .6)),
               shape=str(rng.choice(['circle', 'square', 'triangle'])),
               size=float(rng.uniform(.3, .55)),
               split=float(rng.uniform(.35, .6)))
    return pat


def _lower_pattern(rng) -> str:
    return str(rng.choice(['none', 'sidestripe', 'checks'], p=[.7, .2, .1]))


def _bag(rng) -> Optional[Dict]:
    kind = rng.choice(['none', 'shoulder', 'backpack', 'handbag'],
                      p=[.4, .2, .25, .15])
    if kind == 'none':
        return None
    return dict(kind=str(kind), colour=_colour(rng),
                side=int(rng.choice([-1, 1])),
                size=float(rng.uniform(.8, 1.2)))


def _hat(rng, p=.2) -> Optional[Dict]:
    if rng.random() > p:
        return None
    return dict(kind=str(rng.choice(['cap', 'beanie'])), colour=_colour(rng))


def _family_attributes(rng) -> Dict:
    """Attributes shared by the members of one family of look-alikes."""
    upper = dict(type=str(rng.choice(['tshirt', 'longsleeve', 'coat'],
                                     p=[.35, .4, .25])),
                 colour=_colour(rng), pattern=_upper_pattern(rng))
    upper['colour2'] = _colour(rng, exclude=upper['colour'])
    lower = dict(type=str(rng.choice(['trousers', 'shorts', 'skirt'],
                                     p=[.7, .15, .15])),
                 colour=_colour(rng), pattern=_lower_pattern(rng))
    lower['colour2'] = _colour(rng, exclude=lower['colour'])
    return dict(
        upper=upper, lower=lower,
        hair=dict(colour=_HAIR[rng.choice(len(_HAIR), p=_HAIR_P)].tolist(),
                  style=str(rng.choice(['short', 'long', 'bun'],
                                       p=[.55, .35, .1]))),
        hat=_hat(rng), bag=_bag(rng), shoes=_colour(rng))


def _mutate(attrs: Dict, what: str, rng) -> None:
    """Change one attribute of a family member in place."""
    up, low = attrs['upper'], attrs['lower']
    if what == 'lower_colour':
        low['colour'] = _colour(rng, exclude=low['colour'])
    elif what == 'lower_type':
        low['type'] = str(rng.choice(
            [t for t in ('trousers', 'shorts', 'skirt') if t != low['type']]))
    elif what == 'upper_pattern':
        old = up['pattern']['kind']
        while up['pattern']['kind'] == old:
            up['pattern'] = _upper_pattern(rng)
    elif what == 'upper_colour2':
        if up['pattern']['kind'] == 'none':
            up['pattern'] = _upper_pattern(rng)
        up['colour2'] = _colour(rng, exclude=up['colour'])
    elif what == 'upper_colour':
        up['colour'] = _colour(rng, exclude=up['colour'])
    elif what == 'upper_type':
        up['type'] = str(rng.choice(
            [t for t in ('tshirt', 'longsleeve', 'coat') if t != up['type']]))
    elif what == 'hair':
        hair = attrs['hair']
        if rng.random() < .5:
            hair['style'] = str(rng.choice(
                [s for s in ('short', 'long', 'bun') if s != hair['style']]))
        else:
            old = hair['colour']
            while np.allclose(hair['colour'], old):
                hair['colour'] = _HAIR[rng.choice(len(_HAIR),
                                                  p=_HAIR_P)].tolist()
    elif what == 'hat':
        attrs['hat'] = None if attrs['hat'] else _hat(rng, p=1.)
    elif what == 'bag':
        old = attrs['bag']
        new = _bag(rng)
        while (new is None and old is None) or (
                new is not None and old is not None
                and new['kind'] == old['kind']):
            new = _bag(rng)
        attrs['bag'] = new
    elif what == 'shoes':
        attrs['shoes'] = _colour(rng, exclude=attrs['shoes'])


def _make_identities(seed: int, domain: str, split: str, num_ids: int,
                     family_size: int, pid_start: int) -> List[Dict]:
    """Identities of one split, in families of look-alikes."""
    dom, spl = _DOMAIN_CODE[domain], _SPLIT_CODE[split]
    order = _rng(seed, dom, spl, 0).permutation(num_ids)
    ids = []
    for i in range(num_ids):
        fam = i // family_size
        attrs = _family_attributes(_rng(seed, dom, spl, 1, fam))
        rng = _rng(seed, dom, spl, 2, i)
        if i % family_size:  # the first member keeps the family look
            num = 1 + int(rng.random() < .4)
            for what in rng.choice(_MUTABLE, size=num, replace=False,
                                   p=_MUTABLE_P):
                _mutate(attrs, str(what), rng)
        attrs['skin'] = np.clip(
            _SKIN[rng.integers(len(_SKIN))] + rng.uniform(-.03, .03, 3), 0,
            1).round(4).tolist()
        attrs['body'] = dict(
            height=float(rng.uniform(.82, .92)),
            head=float(rng.uniform(.058, .07)),
            shoulder=float(rng.uniform(.21, .28)),
            hip=float(rng.uniform(.15, .21)),
            torso=float(rng.uniform(.28, .33)),
            leg_width=float(rng.uniform(.065, .085)),
            coat_len=float(rng.uniform(.08, .16)))
        attrs['speed'] = float(rng.uniform(.8, 1.25))
        attrs['pid'] = int(pid_start + order[i])
        attrs['family'] = int(fam)
        ids.append(attrs)
    return ids


# --------------------------------------------------------------------------
# Person rendering (on a 2x canvas, anti-aliased, then downsampled)
# --------------------------------------------------------------------------
def _ctuple(col) -> Tuple[float, float, float]:
    """A colour for cv2 drawing on a float canvas in [0, 1]."""
    return tuple(float(v) for v in col)


def _poly(img, pts, col):
    cv2.fillPoly(img, [np.round(np.asarray(pts) * 16).astype(np.int32)],
                 _ctuple(col), cv2.LINE_AA, shift=4)


def _line(img, p0, p1, col, width):
    cv2.line(img, (int(round(p0[0] * 16)), int(round(p0[1] * 16))),
             (int(round(p1[0] * 16)), int(round(p1[1] * 16))), _ctuple(col),
             max(1, int(round(width))), cv2.LINE_AA, shift=4)


def _ellipse(img, c, axes, col, angle=0., start=0., end=360.):
    cv2.ellipse(img, (int(round(c[0] * 16)), int(round(c[1] * 16))),
                (max(1, int(round(axes[0] * 16))),
                 max(1, int(round(axes[1] * 16)))), angle, start, end,
                _ctuple(col), -1, cv2.LINE_AA, shift=4)


def _paint_pattern(img, mask, kind, col, col2, period, duty, x0, y0, h, w,
                   ph):
    """Paint a garment pattern where ``mask`` is set.

    Args:
        img (np.ndarray): canvas [H, W, 3] float32, painted in place.
        mask (np.ndarray): garment mask [H, W] bool.
        kind (str): 'hstripes', 'vstripes' or 'checks'.
        period (float): stripe period as a fraction of the person height.
    """
    hh, ww = mask.shape
    p = max(3., period * ph)
    ys = (np.arange(hh, dtype=np.float32) - y0)[:, None]
    xs = (np.arange(ww, dtype=np.float32) - x0)[None, :]
    if kind == 'hstripes':
        on = np.broadcast_to((ys % p) < duty * p, mask.shape)
    elif kind == 'vstripes':
        on = np.broadcast_to((xs % p) < duty * p, mask.shape)
    else:  # checks
        on = ((ys // (1.4 * p)) + (xs // (1.4 * p))) % 2 == 0
    sel = mask & on
    img[sel] = col2


def _render_person(attrs: Dict, view: str, pose: Dict, hc: int,
                   wc: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one person on a transparent canvas.

    Args:
        attrs (dict): identity attributes (see ``_make_identities``).
        view (str): 'front' or 'back'.
        pose (dict): per-image pose (stride, arm swing).
        hc (int): canvas height. wc (int): canvas width.

    Returns:
        tuple: colour [hc, wc, 3] float32 RGB and alpha [hc, wc] float32.
    """
    img = np.zeros((hc, wc, 3), np.float32)
    b = attrs['body']
    ph = b['height'] * hc
    top = (hc - ph) * .5
    cx = wc * .5
    head_r = b['head'] * ph
    y_s = top + 2 * head_r + .025 * ph  # shoulders
    y_h = y_s + b['torso'] * ph  # hips
    y_f = top + ph  # feet
    sw, hw = b['shoulder'] * ph / 2, b['hip'] * ph / 2
    lw = b['leg_width'] * ph
    aw = .055 * ph
    up, low = attrs['upper'], attrs['lower']
    skin = attrs['skin']
    stride = pose['stride'] * ph
    front = view == 'front'

    alpha_layer = np.zeros((hc, wc, 3), np.float32)
    # where the lower garment is (for its pattern)
    lower_mask = np.zeros((hc, wc, 3), np.float32)

    def poly(pts, col, mask=None):
        _poly(img, pts, col)
        _poly(alpha_layer, pts, (1, 1, 1))
        if mask is not None:
            _poly(mask, pts, (1, 1, 1))

    def line(p0, p1, col, width):
        _line(img, p0, p1, col, width)
        _line(alpha_layer, p0, p1, (1, 1, 1), width)

    def ellipse(c, axes, col, angle=0., start=0., end=360.):
        _ellipse(img, c, axes, col, angle, start, end)
        _ellipse(alpha_layer, c, axes, (1, 1, 1), angle, start, end)

    # backpack seen from the front: body behind the shoulders
    bag = attrs['bag']
    # legs
    leg_len = y_f - y_h
    knee = y_h + .5 * leg_len
    for s in (-1, 1):
        hip_x = cx + s * hw * .5
        foot_x = hip_x + s * stride * .5
        poly([(hip_x - lw / 2, y_h), (hip_x + lw / 2, y_h),
              (foot_x + lw * .38, y_f - .02 * ph),
              (foot_x - lw * .38, y_f - .02 * ph)], skin)
        if low['type'] == 'trousers':
            poly([(hip_x - lw / 2, y_h), (hip_x + lw / 2, y_h),
                  (foot_x + lw * .42, y_f - .025 * ph),
                  (foot_x - lw * .42, y_f - .025 * ph)], low['colour'],
                 lower_mask)
        elif low['type'] == 'shorts':
            kx = (hip_x + foot_x) / 2
            poly([(hip_x - lw * .55, y_h), (hip_x + lw * .55, y_h),
                  (kx + lw * .5, knee - .04 * ph),
                  (kx - lw * .5, knee - .04 * ph)], low['colour'])
        # shoes
        ellipse((foot_x, y_f - .018 * ph), (lw * .55, .025 * ph),
                attrs['shoes'])
    # hip block joining the legs
    poly([(cx - hw, y_h - .01 * ph), (cx + hw, y_h - .01 * ph),
          (cx + hw * .85, y_h + .06 * ph), (cx - hw * .85, y_h + .06 * ph)],
         low['colour'], lower_mask)
    if low['type'] == 'skirt':
        poly([(cx - hw, y_h - .01 * ph), (cx + hw, y_h - .01 * ph),
              (cx + hw * 1.45, y_h + .22 * ph),
              (cx - hw * 1.45, y_h + .22 * ph)], low['colour'], lower_mask)
    if low['pattern'] != 'none' and low['type'] != 'shorts':
        lmask = np.zeros((hc, wc), np.uint8)
        if low['pattern'] == 'sidestripe':
            for s in (-1, 1):
                hip_x = cx + s * hw * .5
                foot_x = hip_x + s * stride * .5
                bottom = y_h + .22 * ph if low['type'] == 'skirt' else y_f
                fx = foot_x if low['type'] != 'skirt' else cx + s * hw * 1.4
                ox = (lw * .4 if low['type'] != 'skirt' else 0) * s
                cv2.line(lmask, (int((hip_x + s * lw * .42) * 16),
                                 int(y_h * 16)),
                         (int((fx + ox) * 16), int((bottom - .03 * ph) * 16)),
                         1, max(1, int(.018 * ph)), cv2.LINE_8, shift=4)
            img[lmask > 0] = low['colour2']
        else:  # checks within the lower garment
            cloth = lower_mask[..., 0] > .5
            _paint_pattern(img, cloth, 'checks', None, low['colour2'], .05,
                           .5, cx, y_h, hc, wc, ph)
    # backpack body seen from behind is drawn after the torso; from the
    # front its sides stick out behind the shoulders
    if bag and bag['kind'] == 'backpack' and front:
        bw = sw * .95 * bag['size']
        poly([(cx - bw - .02 * ph, y_s + .03 * ph),
              (cx + bw + .02 * ph, y_s + .03 * ph),
              (cx + bw + .02 * ph, y_s + .22 * ph * bag['size']),
              (cx - bw - .02 * ph, y_s + .22 * ph * bag['size'])],
             bag['colour'])
    # long hair behind the shoulders (front view)
    hair = attrs['hair']
    if hair['style'] == 'long' and front:
        poly([(cx - head_r * 1.05, top + head_r), (cx + head_r * 1.05,
                                                   top + head_r),
              (cx + head_r * 1.2, y_s + .07 * ph),
              (cx - head_r * 1.2, y_s + .07 * ph)], hair['colour'])
    # torso
    bottom = y_h + (b['coat_len'] * ph if up['type'] == 'coat' else .015 *
                    ph)
    wide = hw * (1.25 if up['type'] == 'coat' else 1.02)
    torso = [(cx - sw, y_s), (cx + sw, y_s), (cx + wide, bottom),
             (cx - wide, bottom)]
    poly(torso, up['colour'])
    pat = up['pattern']
    if pat['kind'] != 'none':
        tmask = np.zeros((hc, wc), np.uint8)
        cv2.fillPoly(tmask, [np.round(np.asarray(torso)).astype(np.int32)],
                     1)
        tmask = tmask > 0
        if pat['kind'] in ('hstripes', 'vstripes', 'checks'):
            _paint_pattern(img, tmask, pat['kind'], None, up['colour2'],
                           pat['period'], pat['duty'], cx, y_s, hc, wc, ph)
        elif pat['kind'] == 'twotone':
            ys = int(y_s + pat['split'] * (bottom - y_s))
            tmask[:ys] = False
            img[tmask] = up['colour2']
        elif pat['kind'] == 'logo' and front:
            size = pat['size'] * sw
            c = (cx, y_s + .4 * (y_h - y_s))
            if pat['shape'] == 'circle':
                _ellipse(img, c, (size * .55, size * .55), up['colour2'])
            elif pat['shape'] == 'square':
                _poly(img, [(c[0] - size / 2, c[1] - size / 2),
                            (c[0] + size / 2, c[1] - size / 2),
                            (c[0] + size / 2, c[1] + size / 2),
                            (c[0] - size / 2, c[1] + size / 2)],
                      up['colour2'])
            else:
                _poly(img, [(c[0], c[1] - size * .6),
                            (c[0] + size * .6, c[1] + size * .45),
                            (c[0] - size * .6, c[1] + size * .45)],
                      up['colour2'])
    # arms
    sleeve = {'tshirt': .38, 'longsleeve': .93, 'coat': .95}[up['type']]
    arm_len = .37 * ph
    for s in (-1, 1):
        ang = np.deg2rad(pose['arm'] * s + 6.)
        sx, sy = cx + s * (sw + aw * .1), y_s + aw * .45
        ex = sx + s * np.sin(ang) * arm_len
        ey = sy + np.cos(ang) * arm_len
        line((sx, sy), (ex, ey), skin, aw * .85)
        mx, my = sx + (ex - sx) * sleeve, sy + (ey - sy) * sleeve
        line((sx, sy), (mx, my), up['colour'], aw)
        ellipse((ex, ey), (aw * .45, aw * .5), skin)
        if bag and bag['kind'] == 'handbag' and s == bag['side']:
            bs = .085 * ph * bag['size']
            poly([(ex - bs * .6, ey + aw * .2), (ex + bs * .6, ey + aw * .2),
                  (ex + bs * .7, ey + bs * 1.1),
                  (ex - bs * .7, ey + bs * 1.1)], bag['colour'])
    # shoulder bag: strap across the torso, bag on the hip
    if bag and bag['kind'] == 'shoulder':
        side = bag['side'] if front else -bag['side']
        bs = .1 * ph * bag['size']
        bx = cx + side * (hw + bs * .35)
        line((cx - side * sw * .8, y_s + .005 * ph), (bx, y_h - .02 * ph),
             bag['colour'], .02 * ph)
        poly([(bx - bs * .6, y_h - .03 * ph), (bx + bs * .6, y_h - .03 * ph),
              (bx + bs * .6, y_h + bs * .8), (bx - bs * .6, y_h + bs * .8)],
             bag['colour'])
    if bag and bag['kind'] == 'backpack':
        if front:  # straps
            for s in (-1, 1):
                line((cx + s * sw * .55, y_s), (cx + s * sw * .5,
                                                y_s + .17 * ph),
                     bag['colour'], .026 * ph)
        else:
            bw = sw * .8 * bag['size']
            bh = .24 * ph * bag['size']
            poly([(cx - bw, y_s + .02 * ph), (cx + bw, y_s + .02 * ph),
                  (cx + bw * 1.05, y_s + .02 * ph + bh),
                  (cx - bw * 1.05, y_s + .02 * ph + bh)], bag['colour'])
    # neck and head
    line((cx, y_s - .03 * ph), (cx, y_s + .01 * ph), skin, head_r * .8)
    hy = top + head_r
    ellipse((cx, hy), (head_r * .85, head_r), skin if front else
            hair['colour'])
    if front:  # hair on top of the head
        ellipse((cx, hy - head_r * .15), (head_r * .92, head_r * .9),
                hair['colour'], 0, 180, 360)
    if hair['style'] == 'long' and not front:
        poly([(cx - head_r * .95, hy), (cx + head_r * .95, hy),
              (cx + head_r * 1.1, y_s + .09 * ph),
              (cx - head_r * 1.1, y_s + .09 * ph)], hair['colour'])
    if hair['style'] == 'bun':
        ellipse((cx, top + head_r * .05), (head_r * .45, head_r * .4),
                hair['colour'])
    hat = attrs['hat']
    if hat:
        ellipse((cx, hy - head_r * .25), (head_r * .98, head_r * .85),
                hat['colour'], 0, 180, 360)
        if hat['kind'] == 'cap':  # brim
            ellipse((cx, hy - head_r * .22), (head_r * 1.15, head_r * .18),
                    hat['colour'])
    alpha = alpha_layer[..., 0]
    return img, alpha


# --------------------------------------------------------------------------
# Scenes and camera styles
# --------------------------------------------------------------------------
def _noise(rng, h, w, cells: Sequence[int], amps: Sequence[float]):
    """Smooth multi-octave noise [h, w] float32 roughly in [-1, 1]."""
    out = np.zeros((h, w), np.float32)
    for c, a in zip(cells, amps):
        small = rng.uniform(-1, 1, (max(2, h // c + 2), max(2, w // c + 2)))
        out += a * cv2.resize(small.astype(np.float32), (w, h),
                              interpolation=cv2.INTER_CUBIC)
    return out


def _rand_col(rng, lo, hi):
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _scene_indoor(rng, h, w):
    wall = _rand_col(rng, .55, .85)
    img = np.empty((h, w, 3), np.float32)
    img[:] = wall
    img *= (1 + .08 * _noise(rng, h, w, [h // 2], [1.]))[..., None]
    horizon = int(h * rng.uniform(.55, .72))
    floor = _rand_col(rng, .25, .6)
    ground = _noise(rng, h - horizon, w, [4, 2], [.6, .4])
    img[horizon:] = floor * (1 + .25 * ground)[..., None]
    tile = int(rng.integers(5, 12))
    img[horizon::tile] *= .75
    vp = w * rng.uniform(.3, .7)
    for x in np.arange(-w, 2 * w, tile * 3):
        cv2.line(img, (int(vp), horizon), (int(x), h), tuple(
            (floor * .7).tolist()), 1)
    for _ in range(int(rng.integers(3, 7))):  # doors, windows, posters
        x0 = rng.integers(0, w)
        ww = rng.integers(w // 20, w // 6)
        y0 = rng.integers(int(h * .05), int(horizon * .6))
        y1 = horizon if rng.random() < .5 else rng.integers(y0 + 4, horizon)
        col = _rand_col(rng, .1, .95)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + ww), int(y1)),
                      tuple(col.tolist()), -1)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + ww), int(y1)),
                      tuple((wall * .6).tolist()), 1)
    for _ in range(int(rng.integers(1, 4))):  # textured posters, plants
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, horizon))
        pw, ph = int(rng.integers(w // 25 + 2, w // 8 + 3)), int(
            rng.integers(h // 6, h // 2))
        win = img[y0:y0 + ph, x0:x0 + pw]
        if win.size:
            tex = _noise(rng, win.shape[0], win.shape[1], [3, 1], [.7, .5])
            win[:] = _rand_col(rng, .1, .9) * (1 + .6 * tex)[..., None]
    return img


def _scene_corridor(rng, h, w):
    img = _scene_indoor(rng, h, w)
    for _ in range(int(rng.integers(3, 6))):  # pillars
        x0 = int(rng.integers(0, w))
        pw = int(rng.integers(w // 30, w // 12))
        col = _rand_col(rng, .4, .9)
        img[:, x0:x0 + pw] = col
        img[:, x0:x0 + max(1, pw // 4)] *= .8
    light = np.linspace(1.15, .85, h, dtype=np.float32)[:, None, None]
    return img * light


def _scene_mall(rng, h, w):
    img = _scene_indoor(rng, h, w)
    horizon = int(h * .6)
    x = 0
    while x < w:  # shop windows
        ww = int(rng.integers(w // 10, w // 4))
        col = _rand_col(rng, .15, 1.)
        y0 = int(rng.integers(h // 10, h // 4))
        win = img[y0:horizon, x + 2:x + ww - 2]
        if win.size:
            win[:] = col * (1 + .15 * _noise(rng, win.shape[0], win.shape[1],
                                             [6], [1.]))[..., None]
        x += ww
    return img


def _scene_foliage(rng, h, w):
    base = np.array([rng.uniform(.1, .35), rng.uniform(.3, .55),
                     rng.uniform(.05, .25)], np.float32)
    n1 = _noise(rng, h, w, [24, 8, 3], [.6, .35, .25])
    n2 = _noise(rng, h, w, [16, 4], [.5, .3])
    img = base[None, None] * (1 + .5 * n1[..., None])
    img[..., 0] += .12 * n2
    ground = int(h * rng.uniform(.6, .8))
    img[ground:] = np.array([.35, .3, .2], np.float32) * (
        1 + .3 * _noise(rng, h - ground, w, [5, 2], [.6, .4]))[..., None]
    for _ in range(int(rng.integers(2, 6))):  # trunks
        x0 = int(rng.integers(0, w))
        tw = int(rng.integers(3, w // 15 + 4))
        img[:ground + 5, x0:x0 + tw] = np.array([.25, .17, .1]) * rng.uniform(
            .6, 1.3)
    return img


def _scene_brick(rng, h, w):
    brick = np.array([rng.uniform(.45, .7), rng.uniform(.2, .35),
                      rng.uniform(.12, .25)], np.float32)
    mortar = _rand_col(rng, .55, .75)
    img = np.empty((h, w, 3), np.float32)
    img[:] = mortar
    bh, bw = int(rng.integers(4, 8)), int(rng.integers(10, 18))
    for r, y in enumerate(range(0, h, bh)):
        off = (r % 2) * bw // 2
        for x in range(-off, w, bw):
            col = brick * rng.uniform(.75, 1.2)
            img[y:y + bh - 1, max(0, x):max(0, x + bw - 1)] = col
    pave = int(h * rng.uniform(.65, .82))
    img[pave:] = _rand_col(rng, .35, .55) * (
        1 + .25 * _noise(rng, h - pave, w, [3, 1], [.6, .5]))[..., None]
    return img


def _scene_street(rng, h, w):
    img = np.empty((h, w, 3), np.float32)
    img[:] = _rand_col(rng, .3, .7)
    x = 0
    while x < w:  # facades with windows
        fw = int(rng.integers(w // 6, w // 2))
        col = _rand_col(rng, .2, .8)
        img[:, x:x + fw] = col
        win = _rand_col(rng, .05, .5)
        step = int(rng.integers(8, 14))
        for wy in range(3, int(h * .55), step):
            for wx in range(x + 3, x + fw - 6, step):
                img[wy:wy + step // 2, wx:wx + step // 2] = win
        x += fw
    road = int(h * rng.uniform(.6, .75))
    img[road:] = .28 * (1 + .35 * _noise(rng, h - road, w, [2, 1], [.6, .5])
                        )[..., None]
    for _ in range(int(rng.integers(1, 4))):  # parked cars
        cx0 = int(rng.integers(0, w))
        cw = int(rng.integers(w // 8, w // 4))
        ch = int(h * rng.uniform(.12, .22))
        img[road - ch // 2:road + ch // 2, cx0:cx0 + cw] = _rand_col(
            rng, .05, .9)
    return img


_SCENES = {
    'A': (_scene_indoor, _scene_corridor, _scene_mall),
    'B': (_scene_foliage, _scene_brick, _scene_street),
}


def _camera_style(seed: int, domain: str, cam: int) -> Dict:
    """Style of one camera: scene choice, optics and photometry."""
    rng = _rng(seed, _DOMAIN_CODE[domain], 9, cam)
    if domain == 'A':
        # varied but mild: a model can learn some invariance from them
        temp = rng.uniform(-.15, .15)
        style = dict(tint=rng.uniform(-.05, .05), gain=rng.uniform(.85, 1.15),
                     gamma=rng.uniform(.8, 1.2),
                     saturation=rng.uniform(.8, 1.1),
                     blur=rng.uniform(0., .6), noise=rng.uniform(1., 4.),
                     jpeg=int(rng.integers(70, 96)),
                     lowres=rng.uniform(.75, 1.) if rng.random() < .5 else 1.,
                     scale=rng.uniform(.86, 1.05))
    else:
        # strong colour casts, low saturation, low resolution, blur
        temp = rng.uniform(.15, .22) * rng.choice([-1, 1])
        gamma = rng.uniform(.78, .9) if rng.random() < .5 else rng.uniform(
            1.12, 1.3)
        style = dict(tint=rng.uniform(-.06, .06), gain=rng.uniform(.8, 1.2),
                     gamma=gamma, saturation=rng.uniform(.55, .72),
                     blur=rng.uniform(.65, 1.), noise=rng.uniform(4., 7.),
                     jpeg=int(rng.integers(35, 61)),
                     lowres=rng.uniform(.6, .78),
                     scale=rng.uniform(.86, .96))
    style['temperature'] = temp
    style['scene'] = int(rng.integers(len(_SCENES[domain])))
    # whether the camera sees people walking "up" the row from the front
    style['faces_up'] = bool(rng.random() < .5)
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
            for k, v in style.items()}


def _apply_style(img: np.ndarray, style: Dict, rng) -> np.ndarray:
    """Photometric camera style on an RGB float image in [0, 1]."""
    h, w = img.shape[:2]
    t = style['temperature']
    gains = np.array([1 + t, 1 + style['tint'], 1 - t], np.float32)
    img = img * gains * style['gain'] * rng.uniform(.88, 1.12)
    grey = img.mean(-1, keepdims=True)
    img = grey + style['saturation'] * (img - grey)
    img = np.clip(img, 0, 1) ** style['gamma']
    if style['lowres'] < 1:
        small = (max(4, int(w * style['lowres'])),
                 max(8, int(h * style['lowres'])))
        img = cv2.resize(cv2.resize(img, small, interpolation=cv2.INTER_AREA),
                         (w, h), interpolation=cv2.INTER_LINEAR)
    if style['blur'] > .05:
        img = cv2.GaussianBlur(img, (0, 0), style['blur'])
    img = img + rng.normal(0, style['noise'] / 255., img.shape).astype(
        np.float32)
    return np.clip(img, 0, 1)


# --------------------------------------------------------------------------
# Image synthesis
# --------------------------------------------------------------------------
def _render_image(attrs: Dict, scene: np.ndarray, style: Dict, view: str,
                  rng, img_size: Tuple[int, int]) -> np.ndarray:
    """One image of one person seen by one camera (BGR uint8)."""
    h, w = img_size
    hc, wc = 2 * h, 2 * w
    pose = dict(stride=rng.uniform(0, .13), arm=rng.uniform(-14, 14))
    person, alpha = _render_person(attrs, view, pose, hc, wc)
    if rng.random() < .5:  # mirror: accessories change side
        person, alpha = person[:, ::-1], alpha[:, ::-1]
    # pose jitter: scale/shear/translation around the feet
    s = style['scale'] * rng.uniform(.9, 1.07)
    sh = rng.uniform(-.08, .08)
    tx = rng.uniform(-.07, .07) * wc
    ty = rng.uniform(-.04, .04) * hc
    fx, fy = wc / 2, hc * .95
    mat = np.array([[s, s * sh, 0], [0, s, 0]], np.float32)
    mat[:, 2] = np.array([fx + tx, fy + ty]) - mat[:, :2] @ np.array([fx, fy])
    person = cv2.warpAffine(np.ascontiguousarray(person), mat, (wc, hc),
                            flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(np.ascontiguousarray(alpha), mat, (wc, hc),
                           flags=cv2.INTER_LINEAR)
    person = cv2.resize(person, (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)[..., None]
    # shading: light from above
    person = person * np.linspace(1.08, .85, h, dtype=np.float32)[:, None,
                                                                  None]
    # background: a window of the camera's scene, plus clutter
    sh_, sw_ = scene.shape[:2]
    zoom = rng.uniform(.8, 1.)
    ch, cw = int(sh_ * zoom), int(sh_ * zoom * w / h)
    y0 = int(rng.integers(0, sh_ - ch + 1))
    x0 = int(rng.integers(0, sw_ - cw + 1))
    bg = cv2.resize(scene[y0:y0 + ch, x0:x0 + cw], (w, h),
                    interpolation=cv2.INTER_AREA)
    for _ in range(int(rng.integers(0, 3))):
        col = tuple(rng.uniform(0, 1, 3).tolist())
        px, py = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < .5:
            cv2.rectangle(bg, (px, py), (px + int(rng.integers(3, w // 2)),
                                         py + int(rng.integers(3, h // 3))),
                          col, -1)
        else:
            cv2.ellipse(bg, (px, py), (int(rng.integers(2, w // 4)),
                                       int(rng.integers(2, h // 6))), 0, 0,
                        360, col, -1)
    img = person * alpha + bg * (1 - alpha)
    if rng.random() < .12:  # occlusion by an object of the scene
        col = np.asarray(scene[int(rng.integers(0, sh_)),
                               int(rng.integers(0, sw_))]) * rng.uniform(
                                   .5, 1.3)
        if rng.random() < .6:
            top = int(h * rng.uniform(.62, .82))
            img[top:] = col
        else:
            width = int(w * rng.uniform(.2, .35))
            if rng.random() < .5:
                img[:, :width] = col
            else:
                img[:, w - width:] = col
    img = _apply_style(img.astype(np.float32), style, rng)
    return (img[..., ::-1] * 255. + .5).astype(np.uint8)


def _schedule(seed: int, domain: str, split: str, ids: List[Dict],
              num_cams: int, imgs_per_cam: int, min_cams: int,
              faces_up: List[bool]) -> List[Dict]:
    """When and where each person is seen.

    Cameras stand in a row; a person enters at a random time, walks past
    ``k`` consecutive cameras in one direction and is seen ``imgs_per_cam``
    times by each, so frame differences between cameras are transit times.

    Returns:
        list[dict]: one dict per image with pid, cam (0-based), frame, view,
        idx (index of the identity) and k (image index within the camera).
    """
    dom, spl = _DOMAIN_CODE[domain], _SPLIT_CODE[split]
    layout = _rng(seed, dom, 8)
    gaps = layout.uniform(150, 600, max(1, num_cams - 1))  # frames
    records = []
    span = 40 * max(1, len(ids))
    for i, attrs in enumerate(ids):
        rng = _rng(seed, dom, spl, 3, i)
        k = int(rng.integers(min(min_cams, num_cams), num_cams + 1))
        start = int(rng.integers(0, num_cams - k + 1))
        direction = 1 if rng.random() < .5 else -1
        cams = list(range(start, start + k))
        if direction < 0:
            cams = cams[::-1]
        t = float(rng.uniform(0, span)) + 50
        for j, cam in enumerate(cams):
            if j:
                gap = gaps[min(cam, cams[j - 1])]
                t += gap * attrs['speed'] * rng.uniform(.9, 1.1)
            front_p = .85 if faces_up[cam] == (direction > 0) else .15
            for n in range(imgs_per_cam):
                t += rng.uniform(6, 30)
                records.append(dict(
                    idx=i, pid=attrs['pid'], cam=cam, frame=int(t), k=n,
                    view='front' if rng.random() < front_p else 'back'))
    return records


def _params(domain, num_train_ids, num_test_ids, num_cams, imgs_per_cam,
            min_cams, family_size, img_size, seed) -> Dict:
    return dict(domain=str(domain), num_train_ids=int(num_train_ids),
                num_test_ids=int(num_test_ids), num_cams=int(num_cams),
                imgs_per_cam=int(imgs_per_cam), min_cams=int(min_cams),
                family_size=int(family_size),
                img_size=[int(img_size[0]), int(img_size[1])],
                seed=int(seed))


def _check_params(p: Dict) -> None:
    if p['domain'] not in DOMAINS:
        raise ValueError(f'SyntheticReID: domain must be one of {DOMAINS}, '
                         f"got {p['domain']!r}")
    if p['num_train_ids'] < 0 or p['num_test_ids'] < 1:
        raise ValueError('SyntheticReID: num_train_ids must be >= 0 and '
                         'num_test_ids >= 1, got '
                         f"{p['num_train_ids']} and {p['num_test_ids']}")
    if p['num_train_ids'] + p['num_test_ids'] > 4999:
        raise ValueError('SyntheticReID: at most 4999 identities per domain '
                         '(4-digit Market-1501 ids), got '
                         f"{p['num_train_ids'] + p['num_test_ids']}")
    if not 2 <= p['num_cams'] <= 9:
        raise ValueError('SyntheticReID: num_cams must be in [2, 9] '
                         f"(1-digit camera ids), got {p['num_cams']}")
    if not 2 <= p['min_cams'] <= p['num_cams']:
        raise ValueError('SyntheticReID: min_cams must be in [2, num_cams] '
                         'so that every query has a match on another camera,'
                         f" got {p['min_cams']}")
    if p['imgs_per_cam'] < 1 or p['family_size'] < 1:
        raise ValueError('SyntheticReID: imgs_per_cam and family_size must '
                         'be >= 1')
    h, w = p['img_size']
    if h < 32 or w < 16:
        raise ValueError('SyntheticReID: img_size (h, w) must be at least '
                         f'(32, 16), got {tuple(p["img_size"])}')


def _write_tree(root: str, p: Dict) -> Dict:
    """Generate every image of one domain into ``root`` (must exist)."""
    domain, seed = p['domain'], p['seed']
    img_size = tuple(p['img_size'])
    h = img_size[0]
    styles = [_camera_style(seed, domain, c) for c in range(p['num_cams'])]
    scenes = []
    for c, st in enumerate(styles):
        srng = _rng(seed, _DOMAIN_CODE[domain], 10, c)
        fn = _SCENES[domain][st['scene']]
        sh = int(h * 1.25)
        scenes.append(np.clip(fn(srng, sh, int(sh * 2.5)), 0, 1).astype(
            np.float32))
    for d in _SPLIT_DIRS:
        os.makedirs(osp.join(root, d), exist_ok=True)
    start = {'train': 1, 'test': 1 + p['num_train_ids']}
    counts = dict(train=0, query=0, gallery=0)
    identities = {}
    for split, num in (('train', p['num_train_ids']),
                       ('test', p['num_test_ids'])):
        if num == 0:
            continue
        ids = _make_identities(seed, domain, split, num, p['family_size'],
                               _PID_OFFSET[domain] + start[split])
        for a in ids:
            identities[f"{a['pid']:04d}"] = dict(a, split=split)
        recs = _schedule(seed, domain, split, ids, p['num_cams'],
                         p['imgs_per_cam'], p['min_cams'],
                         [s['faces_up'] for s in styles])
        query = set()
        if split == 'test':
            by_id: Dict[int, Dict[int, List[int]]] = {}
            for r, rec in enumerate(recs):
                by_id.setdefault(rec['idx'], {}).setdefault(
                    rec['cam'], []).append(r)
            for i, cams in sorted(by_id.items()):
                qrng = _rng(seed, _DOMAIN_CODE[domain], 4, i)
                cam_list = sorted(cams)
                # at least one camera stays entirely in the gallery
                nq = int(qrng.integers(1, len(cam_list)))
                for cam in qrng.choice(cam_list, nq, replace=False):
                    query.add(int(qrng.choice(cams[int(cam)])))
        for r, rec in enumerate(recs):
            irng = _rng(seed, _DOMAIN_CODE[domain], _SPLIT_CODE[split], 5,
                        rec['idx'], rec['cam'], rec['k'])
            img = _render_image(ids[rec['idx']], scenes[rec['cam']],
                                styles[rec['cam']], rec['view'], irng,
                                img_size)
            ok, buf = cv2.imencode(
                '.jpg', img,
                [int(cv2.IMWRITE_JPEG_QUALITY), styles[rec['cam']]['jpeg']])
            if not ok:  # pragma: no cover
                raise RuntimeError('SyntheticReID: JPEG encoding failed')
            if split == 'train':
                sub = 'bounding_box_train'
                counts['train'] += 1
            elif r in query:
                sub = 'query'
                counts['query'] += 1
            else:
                sub = 'bounding_box_test'
                counts['gallery'] += 1
            name = (f"{rec['pid']:04d}_c{rec['cam'] + 1}s1_"
                    f"{rec['frame']:06d}_00.jpg")
            with open(osp.join(root, sub, name), 'wb') as f:
                f.write(buf.tobytes())
    with open(osp.join(root, 'identities.json'), 'w') as f:
        json.dump(identities, f, sort_keys=True)
    return dict(counts=counts, cameras=styles)


def _read_meta(root: str) -> Optional[Dict]:
    try:
        with open(osp.join(root, 'meta.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _meta_matches(root: str, params: Dict) -> bool:
    meta = _read_meta(root)
    return (meta is not None and meta.get('generator') == GENERATOR_NAME
            and meta.get('version') == GENERATOR_VERSION
            and meta.get('params') == params
            and all(osp.isdir(osp.join(root, d)) for d in _SPLIT_DIRS))


def generate_synthetic_reid(root: str,
                            domain: str = 'A',
                            num_train_ids: int = 200,
                            num_test_ids: int = 100,
                            num_cams: int = 6,
                            imgs_per_cam: int = 2,
                            min_cams: int = 2,
                            family_size: int = 4,
                            img_size: Tuple[int, int] = (128, 64),
                            seed: int = 0,
                            force: bool = False) -> Dict:
    """Generate a synthetic Market-1501-style benchmark (if needed).

    Nothing is done when ``root/meta.json`` already records the same
    generator version and parameters. Otherwise the images are generated
    into a temporary sibling folder that is then renamed to ``root``, under
    an exclusive lock on ``root + '.lock'``, so that several processes
    (DDP ranks, dataloader workers) can call this at the same time: one
    generates, the others wait and find the finished tree.

    Args:
        root (str): Folder of the benchmark. An existing folder is replaced
            only when it is a SyntheticReID folder (has its ``meta.json``) or
            empty.
        domain (str): Camera-style domain, ``'A'`` (indoor, mild styles) or
            ``'B'`` (outdoor, strong colour casts, low saturation, blur).
            Person ids of domain B start at 5001.
        num_train_ids (int): Identities in ``bounding_box_train`` (may be 0).
        num_test_ids (int): Identities in ``query``/``bounding_box_test``.
        num_cams (int): Cameras of the domain (2-9).
        imgs_per_cam (int): Images of a person per camera that sees it.
        min_cams (int): Each person is seen by ``min_cams``..``num_cams``
            consecutive cameras (>= 2).
        family_size (int): Identities per family of look-alikes.
        img_size (tuple[int, int]): Stored image size (h, w).
        seed (int): Seed of every random stream.
        force (bool): Regenerate even if the parameters match.

    Returns:
        dict: The content of ``meta.json`` (generator, version, params,
        counts of train/query/gallery images, camera styles).
    """
    params = _params(domain, num_train_ids, num_test_ids, num_cams,
                     imgs_per_cam, min_cams, family_size, img_size, seed)
    _check_params(params)
    root = osp.abspath(root)
    if not force and _meta_matches(root, params):
        return _read_meta(root)
    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    with open(root + '.lock', 'a+') as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            # another process may have finished while we waited
            if _meta_matches(root, params) and not force:
                return _read_meta(root)
            if osp.exists(root) and os.listdir(root) and _read_meta(
                    root) is None:
                raise ValueError(
                    f'SyntheticReID: {root} exists, is not empty and has no '
                    'meta.json of SyntheticReID; refusing to overwrite it. '
                    'Point data_root to a new or SyntheticReID folder.')
            begin = time.time()
            print_log(
                f'SyntheticReID: generating domain {domain} into {root} '
                f'({num_train_ids} train + {num_test_ids} test identities, '
                f'{num_cams} cameras)...', logger='current')
            tmp = tempfile.mkdtemp(prefix=osp.basename(root) + '.tmp-',
                                   dir=parent)
            try:
                info = _write_tree(tmp, params)
                meta = dict(generator=GENERATOR_NAME,
                            version=GENERATOR_VERSION, params=params,
                            counts=info['counts'], cameras=info['cameras'],
                            seconds=round(time.time() - begin, 2))
                with open(osp.join(tmp, 'meta.json'), 'w') as f:
                    json.dump(meta, f, indent=2, sort_keys=True)
                old = None
                if osp.exists(root):
                    old = tempfile.mkdtemp(
                        prefix=osp.basename(root) + '.old-', dir=parent)
                    os.rename(root, osp.join(old, 'tree'))
                os.rename(tmp, root)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                print_log(
                    f'SyntheticReID: {root} ready in {meta["seconds"]} s '
                    f'({info["counts"]}).', logger='current')
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return meta
        finally:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@DATASETS.register_module()
class SyntheticReID(Market1501):
    """Generated person re-identification benchmark in the Market-1501 tree.

    On construction the images are generated into ``data_root`` unless
    ``data_root/meta.json`` already records the same generator version and
    parameters (see :func:`generate_synthetic_reid`: atomic, and safe when
    several processes start at once). The split is then read as
    :class:`Market1501` does, so every data info has ``img_path``,
    ``gt_label``, ``pid``, ``cam_id`` and ``timestamp`` (frame number on a
    clock shared by the cameras of the domain).

    Expected (generated) tree::

        data_root/
        ├── meta.json  identities.json
        ├── bounding_box_train/   # split='train'
        ├── query/                # split='query'
        └── bounding_box_test/    # split='gallery'

    Every split of one benchmark must be built with the same generation
    parameters (share one dict in the config): different parameters for the
    same ``data_root`` regenerate the folder.

    Args:
        data_root (str): Folder of the benchmark (created if needed).
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
        domain (str): ``'A'`` (indoor scenes, mild camera styles) or ``'B'``
            (outdoor scenes, strong colour casts, low saturation, low
            resolution, blur). Same identity distribution, different people.
        num_train_ids (int): Identities of the train split. Defaults to 200.
        num_test_ids (int): Identities of query/gallery. Defaults to 100.
        seed (int): Generation seed. Defaults to 0.
        img_size (tuple[int, int]): Stored image size (h, w); the pipeline
            resizes. Defaults to (128, 64).
        num_cams (int): Cameras of the domain. Defaults to 6.
        imgs_per_cam (int): Images of a person per camera that sees it.
            Defaults to 2.
        min_cams (int): Fewest cameras that see a person. Defaults to 2.
        family_size (int): Identities per family of look-alikes.
            Defaults to 4.
        **kwargs: Other arguments of :class:`Market1501` (``pipeline``,
            ``lazy_init``, ...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 domain: str = 'A',
                 num_train_ids: int = 200,
                 num_test_ids: int = 100,
                 seed: int = 0,
                 img_size: Tuple[int, int] = (128, 64),
                 num_cams: int = 6,
                 imgs_per_cam: int = 2,
                 min_cams: int = 2,
                 family_size: int = 4,
                 **kwargs):
        if not data_root:
            raise ValueError('SyntheticReID: data_root must be given (the '
                             'folder to generate the benchmark into).')
        self.generation = generate_synthetic_reid(
            data_root, domain=domain, num_train_ids=num_train_ids,
            num_test_ids=num_test_ids, num_cams=num_cams,
            imgs_per_cam=imgs_per_cam, min_cams=min_cams,
            family_size=family_size, img_size=img_size, seed=seed)
        super().__init__(data_root=data_root, split=split, **kwargs)
        # Set after loading: BaseDataset takes a string metainfo value for a
        # file to read and warns that 'A' is not one.
        self._metainfo.setdefault('domain', domain)

    def get_families(self) -> np.ndarray:
        """Family of look-alikes of every item, in dataset order.

        Members of a family share most attributes (the generator's hard
        neighbours); family ids are unique within a split.

        Returns:
            np.ndarray: int64 [len(self)].
        """
        path = osp.join(self.data_root, 'identities.json')
        try:
            with open(path) as f:
                identities = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f'SyntheticReID: cannot read {path}: {e}')
        fams = []
        for i in range(len(self)):
            pid = int(self.get_data_info(i)['pid'])
            entry = identities.get(f'{pid:04d}')
            if entry is None:
                raise ValueError(f'SyntheticReID: identity {pid} is not in '
                                 f'{path}')
            fams.append(int(entry['family']))
        return np.asarray(fams, dtype=np.int64)

    def get_label_families(self) -> np.ndarray:
        """Family of every label ``0..max(gt_label)`` (e.g. of the training
        classes that :class:`GraphSampler` sees); -1 for absent labels.

        Returns:
            np.ndarray: int64 [max label + 1].
        """
        labels = np.asarray(self.get_gt_labels(), dtype=np.int64)
        fams = self.get_families()
        out = np.full(int(labels.max()) + 1 if labels.size else 0, -1,
                      dtype=np.int64)
        out[labels] = fams
        return out
