"""Drawing a person and composing one camera image of it.

The person is drawn on a 2x canvas with anti-aliased cv2 primitives and
downsampled; the image puts it, posed and jittered, in front of a window of
the camera's scene and applies the camera's photometric style.
"""
from typing import Dict, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from .styles import apply_style


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


class _Figure(NamedTuple):
    """Where the body parts of one person go on the canvas (pixels)."""
    hc: int  # canvas height
    wc: int  # canvas width
    ph: float  # person height
    top: float  # top of the head
    cx: float  # body axis
    head_r: float  # head radius
    y_s: float  # shoulders
    y_h: float  # hips
    y_f: float  # feet
    sw: float  # half shoulder width
    hw: float  # half hip width
    lw: float  # leg width
    aw: float  # arm width
    stride: float  # distance between the feet
    front: bool  # seen from the front


class _Canvas:
    """The person's colour and its coverage (alpha), drawn together.

    Args:
        hc (int): Canvas height.
        wc (int): Canvas width.
    """

    def __init__(self, hc: int, wc: int) -> None:
        self.img = np.zeros((hc, wc, 3), np.float32)
        self.alpha = np.zeros((hc, wc, 3), np.float32)

    def poly(self, pts, col, mask=None):
        """A filled polygon (also into ``mask``, a garment's coverage)."""
        _poly(self.img, pts, col)
        _poly(self.alpha, pts, (1, 1, 1))
        if mask is not None:
            _poly(mask, pts, (1, 1, 1))

    def line(self, p0, p1, col, width):
        _line(self.img, p0, p1, col, width)
        _line(self.alpha, p0, p1, (1, 1, 1), width)

    def ellipse(self, c, axes, col, angle=0., start=0., end=360.):
        _ellipse(self.img, c, axes, col, angle, start, end)
        _ellipse(self.alpha, c, axes, (1, 1, 1), angle, start, end)


def _figure(attrs: Dict, view: str, pose: Dict, hc: int, wc: int) -> _Figure:
    """The body geometry of ``attrs`` in one pose on an ``hc x wc`` canvas."""
    b = attrs['body']
    ph = b['height'] * hc
    top = (hc - ph) * .5
    head_r = b['head'] * ph
    y_s = top + 2 * head_r + .025 * ph
    return _Figure(
        hc=hc, wc=wc, ph=ph, top=top, cx=wc * .5, head_r=head_r, y_s=y_s,
        y_h=y_s + b['torso'] * ph, y_f=top + ph, sw=b['shoulder'] * ph / 2,
        hw=b['hip'] * ph / 2, lw=b['leg_width'] * ph, aw=.055 * ph,
        stride=pose['stride'] * ph, front=view == 'front')


def _draw_legs(c: _Canvas, f: _Figure, attrs: Dict,
               lower_mask: np.ndarray) -> None:
    """Legs, lower garment, shoes and the hip block joining the legs."""
    ph, cx, y_h, y_f, lw = f.ph, f.cx, f.y_h, f.y_f, f.lw
    low, skin = attrs['lower'], attrs['skin']
    knee = y_h + .5 * (y_f - y_h)
    for s in (-1, 1):
        hip_x = cx + s * f.hw * .5
        foot_x = hip_x + s * f.stride * .5
        c.poly([(hip_x - lw / 2, y_h), (hip_x + lw / 2, y_h),
                (foot_x + lw * .38, y_f - .02 * ph),
                (foot_x - lw * .38, y_f - .02 * ph)], skin)
        if low['type'] == 'trousers':
            c.poly([(hip_x - lw / 2, y_h), (hip_x + lw / 2, y_h),
                    (foot_x + lw * .42, y_f - .025 * ph),
                    (foot_x - lw * .42, y_f - .025 * ph)], low['colour'],
                   lower_mask)
        elif low['type'] == 'shorts':
            kx = (hip_x + foot_x) / 2
            c.poly([(hip_x - lw * .55, y_h), (hip_x + lw * .55, y_h),
                    (kx + lw * .5, knee - .04 * ph),
                    (kx - lw * .5, knee - .04 * ph)], low['colour'])
        # shoes
        c.ellipse((foot_x, y_f - .018 * ph), (lw * .55, .025 * ph),
                  attrs['shoes'])
    hw = f.hw
    c.poly([(cx - hw, y_h - .01 * ph), (cx + hw, y_h - .01 * ph),
            (cx + hw * .85, y_h + .06 * ph), (cx - hw * .85, y_h + .06 * ph)],
           low['colour'], lower_mask)
    if low['type'] == 'skirt':
        c.poly([(cx - hw, y_h - .01 * ph), (cx + hw, y_h - .01 * ph),
                (cx + hw * 1.45, y_h + .22 * ph),
                (cx - hw * 1.45, y_h + .22 * ph)], low['colour'], lower_mask)


def _paint_lower_pattern(img: np.ndarray, f: _Figure, low: Dict,
                         lower_mask: np.ndarray) -> None:
    """Side stripes or checks on the lower garment (not on shorts)."""
    if low['pattern'] == 'none' or low['type'] == 'shorts':
        return
    ph, cx, y_h, hw, lw = f.ph, f.cx, f.y_h, f.hw, f.lw
    if low['pattern'] == 'sidestripe':
        lmask = np.zeros((f.hc, f.wc), np.uint8)
        for s in (-1, 1):
            hip_x = cx + s * hw * .5
            foot_x = hip_x + s * f.stride * .5
            bottom = y_h + .22 * ph if low['type'] == 'skirt' else f.y_f
            fx = foot_x if low['type'] != 'skirt' else cx + s * hw * 1.4
            ox = (lw * .4 if low['type'] != 'skirt' else 0) * s
            cv2.line(lmask, (int((hip_x + s * lw * .42) * 16),
                             int(y_h * 16)),
                     (int((fx + ox) * 16), int((bottom - .03 * ph) * 16)),
                     1, max(1, int(.018 * ph)), cv2.LINE_8, shift=4)
        img[lmask > 0] = low['colour2']
    else:  # checks within the lower garment
        cloth = lower_mask[..., 0] > .5
        _paint_pattern(img, cloth, 'checks', None, low['colour2'], .05, .5,
                       cx, y_h, f.hc, f.wc, ph)


def _draw_behind_torso(c: _Canvas, f: _Figure, attrs: Dict) -> None:
    """Seen from the front: a backpack's sides sticking out behind the
    shoulders, long hair behind the shoulders."""
    if not f.front:
        return
    ph, cx, y_s, sw, head_r, top = f.ph, f.cx, f.y_s, f.sw, f.head_r, f.top
    bag, hair = attrs['bag'], attrs['hair']
    if bag and bag['kind'] == 'backpack':
        bw = sw * .95 * bag['size']
        c.poly([(cx - bw - .02 * ph, y_s + .03 * ph),
                (cx + bw + .02 * ph, y_s + .03 * ph),
                (cx + bw + .02 * ph, y_s + .22 * ph * bag['size']),
                (cx - bw - .02 * ph, y_s + .22 * ph * bag['size'])],
               bag['colour'])
    if hair['style'] == 'long':
        c.poly([(cx - head_r * 1.05, top + head_r),
                (cx + head_r * 1.05, top + head_r),
                (cx + head_r * 1.2, y_s + .07 * ph),
                (cx - head_r * 1.2, y_s + .07 * ph)], hair['colour'])


def _draw_torso(c: _Canvas, f: _Figure, attrs: Dict) -> None:
    """The upper garment and its pattern (a logo only from the front)."""
    ph, cx, y_s, y_h, sw, hw = f.ph, f.cx, f.y_s, f.y_h, f.sw, f.hw
    up = attrs['upper']
    coat = up['type'] == 'coat'
    bottom = y_h + (attrs['body']['coat_len'] * ph if coat else .015 * ph)
    wide = hw * (1.25 if coat else 1.02)
    torso = [(cx - sw, y_s), (cx + sw, y_s), (cx + wide, bottom),
             (cx - wide, bottom)]
    c.poly(torso, up['colour'])
    pat = up['pattern']
    if pat['kind'] == 'none':
        return
    img = c.img
    tmask = np.zeros((f.hc, f.wc), np.uint8)
    cv2.fillPoly(tmask, [np.round(np.asarray(torso)).astype(np.int32)], 1)
    tmask = tmask > 0
    if pat['kind'] in ('hstripes', 'vstripes', 'checks'):
        _paint_pattern(img, tmask, pat['kind'], None, up['colour2'],
                       pat['period'], pat['duty'], cx, y_s, f.hc, f.wc, ph)
    elif pat['kind'] == 'twotone':
        ys = int(y_s + pat['split'] * (bottom - y_s))
        tmask[:ys] = False
        img[tmask] = up['colour2']
    elif pat['kind'] == 'logo' and f.front:
        size = pat['size'] * sw
        m = (cx, y_s + .4 * (y_h - y_s))
        if pat['shape'] == 'circle':
            _ellipse(img, m, (size * .55, size * .55), up['colour2'])
        elif pat['shape'] == 'square':
            _poly(img, [(m[0] - size / 2, m[1] - size / 2),
                        (m[0] + size / 2, m[1] - size / 2),
                        (m[0] + size / 2, m[1] + size / 2),
                        (m[0] - size / 2, m[1] + size / 2)], up['colour2'])
        else:
            _poly(img, [(m[0], m[1] - size * .6),
                        (m[0] + size * .6, m[1] + size * .45),
                        (m[0] - size * .6, m[1] + size * .45)],
                  up['colour2'])


def _draw_arms(c: _Canvas, f: _Figure, attrs: Dict, arm: float) -> None:
    """Arms (sleeves as long as the upper garment's), hands, a handbag."""
    ph, cx, y_s, sw, aw = f.ph, f.cx, f.y_s, f.sw, f.aw
    up, skin, bag = attrs['upper'], attrs['skin'], attrs['bag']
    sleeve = {'tshirt': .38, 'longsleeve': .93, 'coat': .95}[up['type']]
    arm_len = .37 * ph
    for s in (-1, 1):
        ang = np.deg2rad(arm * s + 6.)
        sx, sy = cx + s * (sw + aw * .1), y_s + aw * .45
        ex = sx + s * np.sin(ang) * arm_len
        ey = sy + np.cos(ang) * arm_len
        c.line((sx, sy), (ex, ey), skin, aw * .85)
        mx, my = sx + (ex - sx) * sleeve, sy + (ey - sy) * sleeve
        c.line((sx, sy), (mx, my), up['colour'], aw)
        c.ellipse((ex, ey), (aw * .45, aw * .5), skin)
        if bag and bag['kind'] == 'handbag' and s == bag['side']:
            bs = .085 * ph * bag['size']
            c.poly([(ex - bs * .6, ey + aw * .2),
                    (ex + bs * .6, ey + aw * .2),
                    (ex + bs * .7, ey + bs * 1.1),
                    (ex - bs * .7, ey + bs * 1.1)], bag['colour'])


def _draw_bags(c: _Canvas, f: _Figure, bag: Optional[Dict]) -> None:
    """A shoulder bag (strap across the torso, bag on the hip), a
    backpack (straps from the front, its body from behind)."""
    if not bag:
        return
    ph, cx, y_s, y_h, sw, hw = f.ph, f.cx, f.y_s, f.y_h, f.sw, f.hw
    if bag['kind'] == 'shoulder':
        side = bag['side'] if f.front else -bag['side']
        bs = .1 * ph * bag['size']
        bx = cx + side * (hw + bs * .35)
        c.line((cx - side * sw * .8, y_s + .005 * ph), (bx, y_h - .02 * ph),
               bag['colour'], .02 * ph)
        c.poly([(bx - bs * .6, y_h - .03 * ph),
                (bx + bs * .6, y_h - .03 * ph),
                (bx + bs * .6, y_h + bs * .8), (bx - bs * .6, y_h + bs * .8)],
               bag['colour'])
    elif bag['kind'] == 'backpack':
        if f.front:  # straps
            for s in (-1, 1):
                c.line((cx + s * sw * .55, y_s),
                       (cx + s * sw * .5, y_s + .17 * ph), bag['colour'],
                       .026 * ph)
        else:
            bw = sw * .8 * bag['size']
            bh = .24 * ph * bag['size']
            c.poly([(cx - bw, y_s + .02 * ph), (cx + bw, y_s + .02 * ph),
                    (cx + bw * 1.05, y_s + .02 * ph + bh),
                    (cx - bw * 1.05, y_s + .02 * ph + bh)], bag['colour'])


def _draw_head(c: _Canvas, f: _Figure, attrs: Dict) -> None:
    """Neck, head (the face from the front), hair and hat."""
    ph, cx, y_s, head_r, top = f.ph, f.cx, f.y_s, f.head_r, f.top
    skin, hair, hat = attrs['skin'], attrs['hair'], attrs['hat']
    c.line((cx, y_s - .03 * ph), (cx, y_s + .01 * ph), skin, head_r * .8)
    hy = top + head_r
    c.ellipse((cx, hy), (head_r * .85, head_r),
              skin if f.front else hair['colour'])
    if f.front:  # hair on top of the head
        c.ellipse((cx, hy - head_r * .15), (head_r * .92, head_r * .9),
                  hair['colour'], 0, 180, 360)
    if hair['style'] == 'long' and not f.front:
        c.poly([(cx - head_r * .95, hy), (cx + head_r * .95, hy),
                (cx + head_r * 1.1, y_s + .09 * ph),
                (cx - head_r * 1.1, y_s + .09 * ph)], hair['colour'])
    if hair['style'] == 'bun':
        c.ellipse((cx, top + head_r * .05), (head_r * .45, head_r * .4),
                  hair['colour'])
    if hat:
        c.ellipse((cx, hy - head_r * .25), (head_r * .98, head_r * .85),
                  hat['colour'], 0, 180, 360)
        if hat['kind'] == 'cap':  # brim
            c.ellipse((cx, hy - head_r * .22), (head_r * 1.15, head_r * .18),
                      hat['colour'])


def render_person(attrs: Dict, view: str, pose: Dict, hc: int,
                  wc: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one person on a transparent canvas, back to front.

    Args:
        attrs (dict): identity attributes (see ``identities.make_identity``).
        view (str): 'front' or 'back'.
        pose (dict): per-image pose (stride, arm swing).
        hc (int): canvas height. wc (int): canvas width.

    Returns:
        tuple: colour [hc, wc, 3] float32 RGB and alpha [hc, wc] float32.
    """
    f = _figure(attrs, view, pose, hc, wc)
    c = _Canvas(hc, wc)
    # where the lower garment is (for its pattern)
    lower_mask = np.zeros((hc, wc, 3), np.float32)
    _draw_legs(c, f, attrs, lower_mask)
    _paint_lower_pattern(c.img, f, attrs['lower'], lower_mask)
    _draw_behind_torso(c, f, attrs)
    _draw_torso(c, f, attrs)
    _draw_arms(c, f, attrs, pose['arm'])
    _draw_bags(c, f, attrs['bag'])
    _draw_head(c, f, attrs)
    return c.img, c.alpha[..., 0]


def render_image(attrs: Dict, scene: np.ndarray, style: Dict, view: str,
                 rng, img_size: Tuple[int, int]) -> np.ndarray:
    """One image of one person seen by one camera (BGR uint8)."""
    h, w = img_size
    hc, wc = 2 * h, 2 * w
    pose = dict(stride=rng.uniform(0, .13), arm=rng.uniform(-14, 14))
    person, alpha = render_person(attrs, view, pose, hc, wc)
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
    img = apply_style(img.astype(np.float32), style, rng)
    return (img[..., ::-1] * 255. + .5).astype(np.uint8)
