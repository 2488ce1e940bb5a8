"""Scenes and camera styles of the three domains.

Each camera has its own scene (a background panorama) and style (colour
temperature, tint, gain, gamma, saturation, resolution, blur, noise, JPEG
quality, person scale; domain C also contrast). Domain ``'A'`` uses indoor
scenes and mild styles, domain ``'B'`` outdoor daylight scenes, strong warm
or cold casts, low saturation, low resolution and blur, domain ``'C'``
outdoor night and overcast scenes, strong blue or green casts, high
contrast, dim light with sensor noise and smaller persons (cameras further
away).
"""
from typing import Dict, Sequence

import cv2
import numpy as np

from .streams import DOMAIN_CODE, random_stream


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


def _scene_night(rng, h, w):
    """A street at night: dark facades with lit windows, pools of lamp
    light on the road."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = _rand_col(rng, .02, .06)  # sky
    x = 0
    while x < w:  # dark facades, some windows lit
        fw = int(rng.integers(w // 7, w // 3))
        top = int(h * rng.uniform(.05, .3))
        img[top:, x:x + fw] = _rand_col(rng, .04, .12)
        if rng.random() < .6:  # warm light
            lit = _rand_col(rng, .55, 1.) * np.array([1., .9, .6], np.float32)
        else:
            lit = _rand_col(rng, .5, .9)
        step = int(rng.integers(7, 12))
        for wy in range(top + 3, int(h * .6), step):
            for wx in range(x + 3, x + fw - 5, step):
                if rng.random() < .35:
                    img[wy:wy + step // 2, wx:wx + step // 2] = lit
        x += fw
    road = int(h * rng.uniform(.62, .75))
    img[road:] = .05 * (1 + .4 * _noise(rng, h - road, w, [3, 1], [.6, .5])
                        )[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):  # street lamps
        lx = float(rng.uniform(0, w))
        col = np.array([1., .85, .55], np.float32) * rng.uniform(.5, .9)
        pool = np.exp(-(((xx - lx) / (.12 * w))**2 +
                        ((yy - h) / (.35 * h))**2))
        img += pool[..., None] * col
        img[int(h * .2):road, int(lx):int(lx) + 2] = .15  # the pole
        cv2.circle(img, (int(lx), int(h * .2)), max(2, h // 40),
                   tuple(col.tolist()), -1)
    return img


def _scene_overcast(rng, h, w):
    """A plaza under an overcast sky: flat grey light, pale concrete,
    dark hedges, paving slabs."""
    sky = rng.uniform(.6, .8)
    img = np.empty((h, w, 3), np.float32)
    img[:] = sky
    img *= (1 + .04 * _noise(rng, h, w, [h // 3], [1.]))[..., None]
    x = 0
    while x < w:  # low concrete blocks with dark openings
        bw = int(rng.integers(w // 8, w // 3))
        top = int(h * rng.uniform(.15, .45))
        img[top:, x:x + bw] = rng.uniform(.45, .65) * np.array(
            [1., 1., 1.02], np.float32)
        for _ in range(int(rng.integers(0, 3))):
            ox = x + int(rng.integers(0, max(1, bw - 6)))
            img[top + 4:int(h * .6), ox:ox + int(rng.integers(3, 8))] = .12
        x += bw
    hedge = int(h * rng.uniform(.52, .6))
    ground = int(h * rng.uniform(.66, .74))
    img[hedge:ground] = np.array([.08, .16, .09], np.float32) * (
        1 + .5 * _noise(rng, ground - hedge, w, [4, 2], [.6, .4]))[..., None]
    img[ground:] = rng.uniform(.45, .6) * (
        1 + .12 * _noise(rng, h - ground, w, [3], [1.]))[..., None]
    slab = int(rng.integers(6, 12))
    img[ground::slab] *= .7
    img[ground:, ::slab * 2] *= .7
    return img


def _scene_underpass(rng, h, w):
    """An underpass at night under fluorescent tubes: tiled walls, a dark
    ceiling, bright strips of light."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = _rand_col(rng, .25, .45) * np.array([.9, 1., .95], np.float32)
    tile = int(rng.integers(4, 8))
    img[::tile] *= .8
    img[:, ::tile] *= .8
    ceiling = int(h * rng.uniform(.12, .22))
    img[:ceiling] = .04
    for x in range(int(rng.integers(0, w // 6)), w, int(w // 5)):
        img[ceiling - 3:ceiling, x:x + w // 10] = np.array(
            [.85, 1., .9], np.float32)
    floor = int(h * rng.uniform(.65, .75))
    img[floor:] = .18 * (1 + .3 * _noise(rng, h - floor, w, [2, 1],
                                         [.6, .4]))[..., None]
    light = np.linspace(1.2, .6, h, dtype=np.float32)[:, None, None]
    return img * light


_SCENES = {
    'A': (_scene_indoor, _scene_corridor, _scene_mall),
    'B': (_scene_foliage, _scene_brick, _scene_street),
    'C': (_scene_night, _scene_overcast, _scene_underpass),
}


def camera_style(seed: int, domain: str, cam: int) -> Dict:
    """Style of one camera: scene choice, optics and photometry."""
    rng = random_stream(seed, DOMAIN_CODE[domain], 9, cam)
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
    elif domain == 'C':
        # night / overcast: a strong blue or green cast, high contrast, dim
        # light with sensor noise, cameras further away (smaller persons)
        if rng.random() < .5:  # blue (moonlight, an overcast sky)
            temp = -rng.uniform(.2, .3)
            tint = rng.uniform(-.02, .04)
        else:  # green (fluorescent, mercury-vapour lamps)
            temp = -rng.uniform(.02, .08)
            tint = rng.uniform(.14, .22)
        style = dict(tint=tint, gain=rng.uniform(.7, .95),
                     gamma=rng.uniform(1.05, 1.25),
                     saturation=rng.uniform(.75, .95),
                     contrast=rng.uniform(1.35, 1.7),
                     blur=rng.uniform(.35, .6), noise=rng.uniform(5., 8.),
                     jpeg=int(rng.integers(45, 71)),
                     lowres=rng.uniform(.7, .85),
                     scale=rng.uniform(.68, .8))
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


def camera_scene(seed: int, domain: str, cam: int, style: Dict,
                 height: int) -> np.ndarray:
    """The background panorama of one camera, in its style's scene.

    Args:
        seed (int): Generation seed.
        domain (str): ``'A'``, ``'B'`` or ``'C'``.
        cam (int): 0-based camera index.
        style (dict): The camera's style (see :func:`camera_style`).
        height (int): Stored image height; the panorama is 1.25 times as
            high and 2.5 times as wide as high.

    Returns:
        np.ndarray: float32 RGB in [0, 1], [int(1.25 * height), width, 3].
    """
    rng = random_stream(seed, DOMAIN_CODE[domain], 10, cam)
    scene_h = int(height * 1.25)
    scene = _SCENES[domain][style['scene']](rng, scene_h, int(scene_h * 2.5))
    return np.clip(scene, 0, 1).astype(np.float32)


def apply_style(img: np.ndarray, style: Dict, rng) -> np.ndarray:
    """Photometric camera style on an RGB float image in [0, 1]."""
    h, w = img.shape[:2]
    t = style['temperature']
    gains = np.array([1 + t, 1 + style['tint'], 1 - t], np.float32)
    img = img * gains * style['gain'] * rng.uniform(.88, 1.12)
    grey = img.mean(-1, keepdims=True)
    img = grey + style['saturation'] * (img - grey)
    img = np.clip(img, 0, 1) ** style['gamma']
    contrast = style.get('contrast')  # domain C only (A, B: no draw, no op)
    if contrast is not None:
        mean = img.mean(axis=(0, 1), keepdims=True)
        img = np.clip(mean + contrast * (img - mean), 0, 1)
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
