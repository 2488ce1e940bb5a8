"""The test results file: the ``.npz`` of ``tools/test.py --out FILE.npz``,
written and read here only.

One entry ``<set>/<field>`` per array of every named test set, saved with
``np.savez_compressed`` (no pickled objects):

- always: :data:`RESULT_FIELDS` (``scores`` [q, g] QAConv logits, higher =
  more similar; ids, cameras and image paths of the queries [q] and the
  gallery [g]);
- when computed: ``distmat`` [q, g] (``-scores``), ``distmat_rerank``
  [q, g] (``--rerank``), ``scores_tlift`` [q, g] (``--tlift``),
  ``query_times`` [q] / ``gallery_times`` [g], ``scores_qq`` [q, q] /
  ``scores_gg`` [g, g]; ``shortlist`` [q, N] (``--shortlist N``: the
  gallery indices each query's exact scores were computed for; ``scores``
  then holds the combined scores of the shortlisted evaluation, exact at
  those entries, pseudo-scores ranked after them elsewhere).

Readers: ``tools/visualization/vis_rank_list.py``,
``tools/analysis_tools/analyze_results.py`` and
:func:`mmreid_gs.apis.threshold_at_fpr`.
"""
import os
import os.path as osp
import zipfile
import zlib
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmreid_gs.utils.errors import ReIDUserError

#: Fields every test set of a results file has.
RESULT_FIELDS = ('scores', 'query_pids', 'gallery_pids', 'query_camids',
                 'gallery_camids', 'query_paths', 'gallery_paths')

#: Expected shape of every field whose size is known, in units of the
#: number of queries ``'q'`` and gallery items ``'g'`` (``scores`` gives
#: both).
FIELD_SHAPES = dict(
    scores=('q', 'g'),
    distmat=('q', 'g'),
    distmat_rerank=('q', 'g'),
    scores_tlift=('q', 'g'),
    scores_qq=('q', 'q'),
    scores_gg=('g', 'g'),
    query_pids=('q', ),
    query_camids=('q', ),
    query_paths=('q', ),
    query_times=('q', ),
    gallery_pids=('g', ),
    gallery_camids=('g', ),
    gallery_paths=('g', ),
    gallery_times=('g', ))

#: ``--use`` choices of :func:`ranking_scores` and the field each reads.
RANKINGS = dict(scores='scores', rerank='distmat_rerank', tlift='scores_tlift')

_WRITE_HINT = 'write it with `tools/test.py CONFIG CKPT --out FILE.npz`'
# what np.load and the lazy reads of an NpzFile raise on a damaged file
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile,
                zlib.error)


def _to_array(value) -> np.ndarray:
    """An output value as saved (tensors as they are, bfloat16 as float32,
    which numpy lacks; lists of paths as string arrays)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def collect_test_results(outputs: Mapping[str, Mapping]
                         ) -> Dict[str, Dict[str, np.ndarray]]:
    """The arrays of the test loop's outputs that the results file holds.

    Args:
        outputs (dict): ``set name -> {field: array | tensor | list}``
            (``ReIDTestLoop.outputs`` with ``test_cfg.keep_outputs=True``);
            ``None`` values and the ``name`` entry are dropped.

    Returns:
        dict: ``set name -> {field: np.ndarray}``, in the given order.
    """
    return {
        name: {
            field: _to_array(value)
            for field, value in fields.items()
            if value is not None and field != 'name'
        }
        for name, fields in outputs.items()
    }


def _check_set(where: str, name: str, fields: Mapping[str, np.ndarray],
               required: Sequence[str], reading: bool) -> None:
    """Raise a :class:`ReIDUserError` naming ``where`` and the field when a
    set lacks a required field or its arrays disagree in size."""
    lacking = [f for f in required if f not in fields]
    if lacking:
        raise ReIDUserError(
            f'{where}: test set {name!r} lacks ' +
            ', '.join(f'{name}/{f}' for f in lacking) +
            (f'; {_WRITE_HINT}' if reading else ''))
    scores = fields['scores']
    if scores.ndim != 2:
        raise ReIDUserError(f'{where}: {name}/scores must be 2-D [query, '
                            f'gallery], got shape {scores.shape}')
    sizes = dict(zip('qg', scores.shape))
    for field, dims in FIELD_SHAPES.items():
        if field not in fields:
            continue
        want = tuple(sizes[d] for d in dims)
        if fields[field].shape != want:
            raise ReIDUserError(
                f'{where}: {name}/{field} has shape {fields[field].shape}, '
                f'expected {list(want)} (' + ' x '.join(dims) +
                f' of {name}/scores {list(scores.shape)})')


def save_test_results(outputs: Mapping[str, Mapping], path: str) -> None:
    """Write the results file (the format of this module's docstring).

    Args:
        outputs (dict): ``set name -> {field: array | tensor | list}``, see
            :func:`collect_test_results`; every set has
            :data:`RESULT_FIELDS`.
        path (str): Output ``.npz`` file (its folder is created).

    Raises:
        ReIDUserError: A set lacks a field of :data:`RESULT_FIELDS` or its
            arrays disagree in size (nothing is written).
    """
    sets = collect_test_results(outputs)
    for name, fields in sets.items():
        _check_set(path, name, fields, RESULT_FIELDS, reading=False)
    arrays = {
        f'{name}/{field}': value
        for name, fields in sets.items() for field, value in fields.items()
    }
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_test_results(path: str,
                      sets: Optional[Sequence[str]] = None,
                      fields: Optional[Sequence[str]] = None
                      ) -> Dict[str, Dict[str, np.ndarray]]:
    """Per-set arrays of a results file.

    Args:
        path (str): The ``.npz`` file of ``tools/test.py --out``.
        sets (Sequence[str], optional): Sets to return (all by default).
        fields (Sequence[str], optional): Read only these fields (plus
            ``scores``), each required. Defaults to None: every field of the
            file, :data:`RESULT_FIELDS` required.

    Returns:
        dict: ``set name -> {field: array}`` in file order (``sets`` order
        when given).

    Raises:
        FileNotFoundError: The file does not exist.
        ReIDUserError: Not a readable ``.npz`` of ``<set>/<field>`` entries,
            a set is missing, lacks a field or its arrays disagree in size
            (the message names the path and the field).
    """
    return _read(path, sets, fields, one=False)


def load_test_set(path: str,
                  name: Optional[str] = None,
                  fields: Optional[Sequence[str]] = None
                  ) -> Tuple[str, Dict[str, np.ndarray]]:
    """One set of a results file.

    Args:
        path (str): The ``.npz`` file of ``tools/test.py --out``.
        name (str, optional): The set; may be omitted when the file holds
            one set.
        fields (Sequence[str], optional): As :func:`load_test_results`.

    Returns:
        tuple: ``(name, {field: array})``.

    Raises:
        FileNotFoundError: The file does not exist.
        ReIDUserError: As :func:`load_test_results`, or ``name`` is omitted
            and the file holds several sets.
    """
    out = _read(path, None if name is None else [name], fields, one=True)
    return next(iter(out.items()))


def _read(path: str, sets: Optional[Sequence[str]],
          fields: Optional[Sequence[str]],
          one: bool) -> Dict[str, Dict[str, np.ndarray]]:
    """:func:`load_test_results`; ``one``: the file's only set when
    ``sets`` is None."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file not found: {path}')
    required = RESULT_FIELDS if fields is None else tuple(
        dict.fromkeys(('scores', ) + tuple(fields)))
    try:
        data = np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise ReIDUserError(f'cannot read {path} as a .npz file of '
                            f'tools/test.py --out: {err}') from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ReIDUserError(f'{path} is a single .npy array, not a results '
                            f'file of <set>/<field> entries; {_WRITE_HINT}')
    with data:
        keys: Dict[str, Dict[str, str]] = {}
        for key in data.files:
            if '/' in key:
                name, field = key.rsplit('/', 1)
                keys.setdefault(name, {})[field] = key
        if not keys:
            raise ReIDUserError(
                f'{path} holds no <set>/<field> entries: not a file written '
                f'by tools/test.py --out; {_WRITE_HINT}')
        if sets is None and one and len(keys) > 1:
            raise ReIDUserError(f'{path} holds several test sets '
                                f'({", ".join(keys)}): name one')
        for name in sets or ():
            if name not in keys:
                raise ReIDUserError(f'{path} has no test set {name!r}; it '
                                    f'has: {", ".join(keys)}')
        out = {}
        for name in (sets or keys):
            wanted = {
                f: k
                for f, k in keys[name].items()
                if fields is None or f in required
            }
            out[name] = {}
            for field, key in wanted.items():
                try:
                    out[name][field] = data[key]
                except _READ_ERRORS as err:
                    raise ReIDUserError(
                        f'{path}: cannot read {key} ({err}): not a file '
                        'written by tools/test.py --out') from None
    for name, arrays in out.items():
        _check_set(path, name, arrays, required, reading=True)
    return out


def ranking_scores(fields: Mapping[str, np.ndarray],
                   use: str = 'scores') -> np.ndarray:
    """The matrix of a set to rank by (higher = more similar).

    Args:
        fields (dict): One set of :func:`load_test_results`.
        use (str): ``'scores'`` (QAConv logits), ``'rerank'`` (minus the
            re-ranked distances) or ``'tlift'`` (TLift scores).

    Returns:
        np.ndarray: [q, g].

    Raises:
        ReIDUserError: An unknown ``use``, or the set lacks its field.
    """
    key = RANKINGS.get(use)
    if key is None:
        raise ReIDUserError(f'unknown ranking {use!r}: use ' +
                            ', '.join(repr(u) for u in RANKINGS))
    if key not in fields:
        raise ReIDUserError(
            f'the results have no {key}: run tools/test.py with --{use} '
            '--out FILE.npz')
    return -fields[key] if use == 'rerank' else fields[key]
