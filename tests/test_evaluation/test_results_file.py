"""The ``tools/test.py --out`` results file: its one writer and one reader
(round trip, the keys of existing files, clear errors naming the path and
the field)."""
import os.path as osp

import numpy as np
import pytest
import torch

from mmreid_gs.evaluation.results_file import (RESULT_FIELDS,
                                               collect_test_results,
                                               load_test_results,
                                               load_test_set, ranking_scores,
                                               save_test_results)
from mmreid_gs.utils.errors import ReIDUserError


def _outputs(q=3, g=5, seed=0, **extra):
    """One set as ``ReIDTestLoop.outputs`` holds it."""
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.normal(size=(q, g)).astype(np.float32))
    return dict(
        name='ignored', scores=scores,
        query_pids=rng.integers(0, 3, q), gallery_pids=rng.integers(0, 3, g),
        query_camids=rng.integers(0, 2, q),
        gallery_camids=rng.integers(0, 2, g),
        query_paths=[f'q/{i}.jpg' for i in range(q)],
        gallery_paths=[f'g/{i}.jpg' for i in range(g)],
        distmat=-scores.numpy(), query_times=None, **extra)


def test_round_trip(tmp_path):
    path = str(tmp_path / 'sub' / 'results.npz')  # the folder is created
    outputs = dict(A=_outputs(), B=_outputs(4, 6, seed=1,
                                            scores_tlift=np.ones((4, 6))))
    save_test_results(outputs, path)
    loaded = load_test_results(path)
    assert list(loaded) == ['A', 'B']
    for name, fields in outputs.items():
        kept = {k: v for k, v in fields.items()
                if v is not None and k != 'name'}
        assert list(loaded[name]) == list(kept)
        for key, value in kept.items():
            value = value.numpy() if torch.is_tensor(value) else value
            np.testing.assert_array_equal(loaded[name][key], value)
            assert loaded[name][key].dtype == np.asarray(value).dtype
    assert loaded['A']['query_paths'].tolist() == ['q/0.jpg', 'q/1.jpg',
                                                   'q/2.jpg']
    # the sets and fields asked for, in that order
    assert list(load_test_results(path, ['B', 'A'])) == ['B', 'A']
    only = load_test_results(path, ['B'], fields=('query_pids', ))
    assert list(only['B']) == ['scores', 'query_pids']
    name, fields = load_test_set(path, 'B', fields=('gallery_pids', ))
    assert name == 'B' and set(fields) == {'scores', 'gallery_pids'}
    np.testing.assert_array_equal(
        ranking_scores(loaded['B'], 'tlift'), np.ones((4, 6)))
    with pytest.raises(ReIDUserError, match='--rerank'):
        ranking_scores(loaded['B'], 'rerank')
    with pytest.raises(ReIDUserError, match='unknown ranking'):
        ranking_scores(loaded['B'], 'best')


def test_file_keys_and_arrays_as_before(tmp_path):
    """Byte-compatible with the files written before this module: the same
    ``<set>/<field>`` entries, arrays and dtypes."""
    outputs = dict(A=_outputs(scores_qq=torch.zeros(3, 3)))
    path = str(tmp_path / 'r.npz')
    save_test_results(outputs, path)
    before = {}
    for name, fields in outputs.items():  # the former writer, inlined
        for key, value in fields.items():
            if value is None or key == 'name':
                continue
            if isinstance(value, torch.Tensor):
                value = value.cpu().numpy()
            before[f'{name}/{key}'] = np.asarray(value)
    with np.load(path) as data:
        assert data.files == list(before)
        for key, value in before.items():
            assert data[key].dtype == value.dtype
            np.testing.assert_array_equal(data[key], value)


def test_collect_converts_tensors():
    sets = collect_test_results(
        dict(A=dict(name='A', scores=torch.ones(2, 3, dtype=torch.bfloat16),
                    half=torch.ones(2, dtype=torch.float16), none=None,
                    paths=['a', 'b'])))
    assert list(sets['A']) == ['scores', 'half', 'paths']
    assert sets['A']['scores'].dtype == np.float32  # numpy has no bfloat16
    assert sets['A']['half'].dtype == np.float16  # kept as saved before
    assert sets['A']['paths'].dtype.kind == 'U'


def test_missing_field_names_it_and_the_path(tmp_path):
    path = str(tmp_path / 'partial.npz')
    full = collect_test_results(dict(A=_outputs()))['A']
    np.savez(path, **{f'A/{k}': v for k, v in full.items()
                      if k != 'query_camids'})
    with pytest.raises(ReIDUserError) as err:
        load_test_results(path)
    assert path in str(err.value) and 'A/query_camids' in str(err.value)
    assert 'tools/test.py' in str(err.value)
    # a caller that does not need it reads the file
    assert load_test_results(path, fields=('query_pids', ))
    # the writer refuses to write such a set (nothing written)
    out = str(tmp_path / 'never.npz')
    with pytest.raises(ReIDUserError, match='A/gallery_paths'):
        save_test_results(dict(A=dict(_outputs(), gallery_paths=None)), out)
    assert not osp.exists(out)


def test_sizes_must_agree(tmp_path):
    path = str(tmp_path / 'sizes.npz')
    full = collect_test_results(dict(A=_outputs()))['A']
    np.savez(path, **dict({f'A/{k}': v for k, v in full.items()},
                          **{'A/gallery_pids': np.zeros(4)}))
    with pytest.raises(ReIDUserError,
                       match=r'A/gallery_pids has shape \(4,\), expected '
                       r'\[5\]') as err:
        load_test_results(path)
    assert path in str(err.value)
    with pytest.raises(ReIDUserError, match=r'A/distmat_rerank .*\[3, 5\]'):
        save_test_results(
            dict(A=_outputs(distmat_rerank=np.zeros((5, 3)))),
            str(tmp_path / 'bad.npz'))
    np.savez(path, **dict({f'A/{k}': v for k, v in full.items()},
                          **{'A/scores': np.zeros(3)}))
    with pytest.raises(ReIDUserError, match='A/scores must be 2-D'):
        load_test_results(path)


def test_sets_and_files_that_are_not_results(tmp_path):
    path = str(tmp_path / 'r.npz')
    save_test_results(dict(A=_outputs(), B=_outputs()), path)
    with pytest.raises(ReIDUserError, match="no test set 'C'; it has: A, B"):
        load_test_results(path, ['A', 'C'])
    with pytest.raises(ReIDUserError, match=r'several test sets \(A, B\)'):
        load_test_set(path)
    with pytest.raises(FileNotFoundError, match='not found'):
        load_test_results(str(tmp_path / 'missing.npz'))
    cases = {
        'plain.npz': lambda p: np.savez(p, x=np.zeros(2)),
        'array.npy': lambda p: np.save(p, np.zeros(2)),
        'text.npz': lambda p: open(p, 'w').write('not a zip'),
        'empty.npz': lambda p: open(p, 'w').close(),
        'truncated.npz':
        lambda p: open(p, 'wb').write(open(path, 'rb').read()[:200]),
        'objects.npz': lambda p: np.savez(
            p, **{'A/scores': np.array([None, 1], dtype=object)}),
    }
    for name, write in cases.items():
        bad = str(tmp_path / name)
        write(bad)
        with pytest.raises(ReIDUserError) as err:
            load_test_results(bad)
        assert bad in str(err.value) and 'tools/test.py' in str(
            err.value), name
    # one set is named when the file holds only one
    one = str(tmp_path / 'one.npz')
    save_test_results(dict(only=_outputs()), one)
    assert load_test_set(one)[0] == 'only'
    assert RESULT_FIELDS[0] == 'scores'
