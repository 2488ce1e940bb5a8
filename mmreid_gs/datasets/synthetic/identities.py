"""Identities of the synthetic benchmark, in families of look-alikes.

An identity is a dict of attributes: body proportions, skin and hair,
upper and lower garment (type, colour, pattern), shoes and accessories (hat,
bag). The members of a family share the family's attributes and differ in
one or two of them, so that the nearest classes are genuinely hard.
"""
from typing import Dict, List, Optional

import numpy as np

from .streams import DOMAIN_CODE, SPLIT_CODE, random_stream

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


def make_identities(seed: int, domain: str, split: str, num_ids: int,
                    family_size: int, pid_start: int) -> List[Dict]:
    """Identities of one split, in families of look-alikes."""
    dom, spl = DOMAIN_CODE[domain], SPLIT_CODE[split]
    order = random_stream(seed, dom, spl, 0).permutation(num_ids)
    ids = []
    for i in range(num_ids):
        fam = i // family_size
        attrs = _family_attributes(random_stream(seed, dom, spl, 1, fam))
        rng = random_stream(seed, dom, spl, 2, i)
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
