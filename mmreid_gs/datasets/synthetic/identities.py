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


#: Where the identities of each (domain, split) sit among the person ids:
#: identity number ``n`` (0-based, in the split's shuffled id order) of
#: ``(domain, split)`` has the person id ``NUM_PID_SLOTS * n + slot``. The
#: six residues modulo ``NUM_PID_SLOTS`` never meet, so the ids of the three
#: domains and of the train and test splits are disjoint at any number of
#: identities (and 0, Market-1501's distractor id, is never used: slot 6 is
#: residue 0 from 6 on). Generator 1.4 added domain C and went from 4 to 6
#: slots: the ids (file names) of A and B changed, their images and the
#: order of their labels did not (labels follow the shuffled order ``n``).
PID_SLOTS = {('A', 'train'): 1, ('A', 'test'): 2, ('B', 'train'): 3,
             ('B', 'test'): 4, ('C', 'train'): 5, ('C', 'test'): 6}
NUM_PID_SLOTS = len(PID_SLOTS)


def person_ids(seed: int, domain: str, split: str,
               num_ids: int) -> np.ndarray:
    """Person id of every identity of a split, without drawing the
    identities (the labels of a tree, not its images).

    Args:
        seed (int): Generation seed.
        domain (str): ``'A'``, ``'B'`` or ``'C'``.
        split (str): ``'train'`` or ``'test'``.
        num_ids (int): Identities of the split.

    Returns:
        np.ndarray: int64 [num_ids]; entry ``i`` is the id of identity ``i``
        (the family of identity ``i`` is ``i // family_size``). The ids are
        a shuffled ``NUM_PID_SLOTS * arange(num_ids) + slot``, see
        :data:`PID_SLOTS`.
    """
    if (domain, split) not in PID_SLOTS:
        raise ValueError(f'SyntheticReID: no person ids for domain '
                         f'{domain!r} and split {split!r}; expected one of '
                         f'{sorted(PID_SLOTS)}')
    order = random_stream(seed, DOMAIN_CODE[domain], SPLIT_CODE[split],
                          0).permutation(int(num_ids))
    return NUM_PID_SLOTS * order.astype(np.int64) + PID_SLOTS[(domain,
                                                               split)]


def make_identity(seed: int, domain: str, split: str, index: int,
                  family_size: int, pid: int) -> Dict:
    """The attributes of identity ``index`` of a split.

    Identity ``index`` belongs to family ``index // family_size``; the first
    member of a family keeps the family look, the others change one or two
    attributes. Only the identity's own streams are drawn, so identities
    can be made one at a time (memory flat in their number) and identity
    ``index`` is the same person whatever the number of identities.

    Args:
        seed (int): Generation seed.
        domain (str): ``'A'``, ``'B'`` or ``'C'``.
        split (str): ``'train'`` or ``'test'``.
        index (int): Index of the identity in the split (0-based).
        family_size (int): Identities per family of look-alikes.
        pid (int): Its person id (see :func:`person_ids`).

    Returns:
        dict: Attributes (``upper``, ``lower``, ``hair``, ``hat``, ``bag``,
        ``shoes``, ``skin``, ``body``, ``speed``) plus ``pid`` and
        ``family``.
    """
    dom, spl = DOMAIN_CODE[domain], SPLIT_CODE[split]
    i = int(index)
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
    attrs['pid'] = int(pid)
    attrs['family'] = int(fam)
    return attrs
