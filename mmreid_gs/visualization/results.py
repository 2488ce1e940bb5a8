"""Reader of what the tools draw from: the ``.npz`` of ``tools/test.py
--out`` (the class-graph dumps are read by
:mod:`mmreid_gs.engine.graph.dump`).
"""
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np

from mmreid_gs.utils.errors import ReIDUserError

#: Fields every test set of a results file must have.
RESULT_FIELDS = ('scores', 'query_pids', 'gallery_pids', 'query_camids',
                 'gallery_camids', 'query_paths', 'gallery_paths')


def load_test_results(path: str,
                      sets: Optional[Sequence[str]] = None
                      ) -> Dict[str, Dict[str, np.ndarray]]:
    """Per-set arrays of a ``tools/test.py --out`` file.

    Args:
        path (str): The ``.npz`` file (entries ``<set>/<field>``).
        sets (Sequence[str], optional): Sets to return (all by default).

    Returns:
        dict: ``set name -> {field: array}`` in file order; every set has
        :data:`RESULT_FIELDS` (plus ``distmat_rerank`` / ``scores_tlift``
        when they were computed).

    Raises:
        FileNotFoundError: The file does not exist.
        ReIDUserError: Not a results file, a set is missing or incomplete, or
            its arrays disagree in size.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file not found: {path}')
    try:
        data = np.load(path, allow_pickle=False)
        keys = list(data.keys())
    except (OSError, ValueError) as err:
        raise ReIDUserError(f'cannot read {path} as a .npz file: {err}')
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for key in keys:
        if '/' not in key:
            continue
        name, field = key.rsplit('/', 1)
        out.setdefault(name, {})[field] = data[key]
    if not out:
        raise ReIDUserError(
            f'{path} has no <set>/<field> entries: write it with '
            '`tools/test.py CONFIG CKPT --out FILE.npz`')
    if sets:
        missing = [s for s in sets if s not in out]
        if missing:
            raise ReIDUserError(
                f'set {missing[0]!r} is not in {path}; it has: '
                f'{", ".join(out)}')
        out = {s: out[s] for s in sets}
    for name, fields in out.items():
        lacking = [f for f in RESULT_FIELDS if f not in fields]
        if lacking:
            raise ReIDUserError(f'{path}: set {name!r} lacks '
                                f'{", ".join(lacking)}')
        q, g = len(fields['query_paths']), len(fields['gallery_paths'])
        if fields['scores'].shape != (q, g):
            raise ReIDUserError(
                f'{path}: {name}/scores has shape {fields["scores"].shape}, '
                f'expected [{q}, {g}] (query x gallery paths)')
        for field, n in (('query_pids', q), ('query_camids', q),
                         ('gallery_pids', g), ('gallery_camids', g)):
            if len(fields[field]) != n:
                raise ReIDUserError(
                    f'{path}: {name}/{field} has {len(fields[field])} '
                    f'entries, expected {n}')
    return out


def ranking_scores(fields: Dict[str, np.ndarray], use: str = 'scores'
                   ) -> np.ndarray:
    """The matrix to rank by (higher = more similar).

    Args:
        fields (dict): One set of :func:`load_test_results`.
        use (str): ``'scores'`` (QAConv logits), ``'rerank'`` (minus the
            re-ranked distances) or ``'tlift'`` (TLift scores).

    Returns:
        np.ndarray: [q, g].
    """
    if use == 'scores':
        return fields['scores']
    key = dict(rerank='distmat_rerank', tlift='scores_tlift').get(use)
    if key is None:
        raise ReIDUserError(f"unknown ranking {use!r}: use 'scores', 'rerank' "
                            "or 'tlift'")
    if key not in fields:
        raise ReIDUserError(
            f'the results have no {key}: run tools/test.py with --{use} '
            '--out FILE.npz')
    return -fields[key] if use == 'rerank' else fields[key]
