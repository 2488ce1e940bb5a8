"""mmreid_gs.apis.inference: init_model, ReIDInferencer, threshold_at_fpr."""
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from apis_helpers import person, write_gallery

from mmreid_gs.apis import (ReIDInferencer, extract_feature_maps, init_model,
                            list_images, match_images, read_image,
                            threshold_at_fpr)
from mmreid_gs.evaluation.functional import verification_rates
from mmreid_gs.utils.errors import ReIDUserError


@pytest.fixture(scope='module')
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp('gallery')
    paths = write_gallery(folder, num=6)
    with open(folder / 'notes.txt', 'w') as f:  # not an image: ignored
        f.write('x')
    query = str(tmp_path_factory.mktemp('query') / 'q.png')
    shutil.copy(paths[3], query)
    return str(folder), paths, query


def test_rank_puts_the_identical_image_first(tiny_model, gallery):
    folder, paths, query = gallery
    inferencer = ReIDInferencer(tiny_model, batch_size=4)
    result = inferencer.rank(query, folder, topk=4)
    assert result.paths[0] == paths[3]
    assert result.query == query
    assert len(result.paths) == len(result.scores) == 4
    assert np.all(np.diff(result.scores) <= 0)
    scores = inferencer.match([query], folder)[0].numpy()
    assert scores.argmax() == 3
    np.testing.assert_allclose(result.scores, scores[result.indices],
                               rtol=1e-6)
    assert [paths[i] for i in result.indices] == result.paths
    full = inferencer.rank(query, paths)  # a list works too, all kept
    assert len(full.paths) == 6


def test_extract_paths_arrays_and_modes_agree(tiny_model, gallery):
    folder, paths, _ = gallery
    inferencer = ReIDInferencer(tiny_model, batch_size=4)
    feats = inferencer.extract(folder)
    assert feats.shape == (6, 16, 4, 2)
    np.testing.assert_allclose(feats.norm(dim=1).numpy(), 1., atol=1e-5)
    arrays = [cv2.imread(p) for p in paths]
    np.testing.assert_allclose(inferencer.extract(arrays).numpy(),
                               feats.numpy(), atol=1e-6)
    scores = inferencer.match(feats[:2], feats)
    with torch.inference_mode():
        feats_im = inferencer.extract(paths)
        scores_im = inferencer.match(paths[:2], paths)
        legacy = match_images(tiny_model, paths[:2], paths)
    np.testing.assert_allclose(feats_im.numpy(), feats.numpy(), atol=1e-6)
    np.testing.assert_allclose(scores_im.numpy(), scores.numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(legacy.numpy(), scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        extract_feature_maps(tiny_model, paths).numpy(), feats.numpy(),
        atol=1e-6)
    # model.match is what the inferencer reports
    np.testing.assert_allclose(
        tiny_model.match(feats[:2], feats).numpy(), scores.numpy(),
        atol=1e-6)


def test_bfloat16_on_the_cpu(tiny_config, tiny_model, gallery):
    folder, paths, query = gallery
    half = init_model(tiny_config, None, half=True)  # bfloat16 on the CPU
    half.load_state_dict(tiny_model.state_dict())
    inferencer = ReIDInferencer(half)
    assert inferencer.dtype == torch.bfloat16
    feats = inferencer.extract(paths)
    assert feats.dtype == torch.bfloat16
    ref = ReIDInferencer(tiny_model).match([query], paths)
    with torch.inference_mode():
        scores = inferencer.match([query], paths)
    assert scores.dtype == torch.float32
    span = float(ref.max() - ref.min())
    assert float((scores - ref).abs().max()) < 0.05 * span
    assert int(scores.argmax()) == 3
    explicit = init_model(tiny_config, None, dtype='bfloat16')
    assert next(explicit.backbone.parameters()).dtype == torch.bfloat16
    assert explicit.data_preprocessor.mean.dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_float32_and_half(tiny_config, tiny_model, gallery):
    folder, paths, query = gallery
    ref = ReIDInferencer(tiny_model).match([query], paths)
    for half in (False, True):
        model = init_model(tiny_config, None, device='cuda', half=half)
        model.load_state_dict(tiny_model.state_dict())
        inferencer = ReIDInferencer(model)
        assert inferencer.device.type == 'cuda'
        assert inferencer.dtype == (torch.float16 if half else torch.float32)
        with torch.inference_mode():
            scores = inferencer.match([query], paths)
        span = float(ref.max() - ref.min())
        tol = 0.05 * span if half else 1e-3 * span
        assert float((scores - ref).abs().max()) < tol
        assert int(scores.argmax()) == 3


def test_clear_errors_name_the_file(tmp_path, tiny_model):
    text = tmp_path / 'not_an_image.jpg'
    text.write_text('hello')
    with pytest.raises(ReIDUserError, match='not_an_image.jpg'):
        read_image(str(text))
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(ReIDUserError, match='empty.png'):
        read_image(str(empty))
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        read_image(str(tmp_path / 'missing.jpg'))
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        read_image(str(tmp_path))
    folder = tmp_path / 'no_images'
    folder.mkdir()
    (folder / 'a.txt').write_text('x')
    with pytest.raises(ReIDUserError, match='no image file .*no_images'):
        list_images(str(folder))
    with pytest.raises(NotADirectoryError, match='a.txt'):
        list_images(str(folder / 'a.txt'))
    inferencer = ReIDInferencer(tiny_model)
    cv2.imwrite(str(tmp_path / 'good.png'), person(0))
    with pytest.raises(ReIDUserError, match='not_an_image.jpg'):
        inferencer.extract([str(tmp_path / 'good.png'), str(text)])
    with pytest.raises(ReIDUserError, match='HxWx3 uint8'):
        inferencer.extract([np.zeros((4, 4), np.float32)])
    with pytest.raises(ReIDUserError, match='topk'):
        inferencer.rank(str(tmp_path / 'good.png'), [str(text)], topk=0)
    with pytest.raises(ReIDUserError, match='dtype'):
        init_model(tiny_model.cfg, None, dtype='int8')
    if not torch.cuda.is_available():
        with pytest.raises(ReIDUserError, match='CUDA is not available'):
            init_model(tiny_model.cfg, None, device='cuda')


def test_threshold_at_fpr_matches_the_metric(tmp_path):
    scores = np.array([[3.0, 1.0, -1.0], [0.5, 2.0, 0.25]])
    q_pids, g_pids = np.array([1, 2]), np.array([1, 2, 3])
    path = str(tmp_path / 'results.npz')
    np.savez(path, **{'A/scores': scores, 'A/query_pids': q_pids,
                      'A/gallery_pids': g_pids})
    # negatives (descending) 1.0, 0.5, 0.25, -1.0: at FPR 0.25 one false
    # positive is allowed, so the threshold is the second largest, 0.5
    found = threshold_at_fpr(path, 0.25)
    assert found == dict(threshold=0.5, tpr=1.0, set='A', fpr=0.25)
    # at FPR 1e-3 none is allowed: threshold 1.0, both positives above it
    assert threshold_at_fpr(path, 1e-3)['threshold'] == 1.0
    labels = q_pids[:, None] == g_pids[None]
    rates = verification_rates(scores, labels, [0.25])
    assert rates['threshold@FPR=0.25'] == found['threshold']

    two = str(tmp_path / 'two.npz')
    np.savez(two, **{'A/scores': scores, 'A/query_pids': q_pids,
                     'A/gallery_pids': g_pids, 'B/scores': scores,
                     'B/query_pids': q_pids, 'B/gallery_pids': g_pids})
    with pytest.raises(ReIDUserError, match='several test sets'):
        threshold_at_fpr(two)
    assert threshold_at_fpr(two, 0.25, 'B')['set'] == 'B'
    with pytest.raises(ReIDUserError, match="no test set 'C'"):
        threshold_at_fpr(two, 0.25, 'C')
    lacking = str(tmp_path / 'lacking.npz')
    np.savez(lacking, **{'A/scores': scores, 'A/query_pids': q_pids})
    with pytest.raises(ReIDUserError, match='A/gallery_pids') as err:
        threshold_at_fpr(lacking)
    assert lacking in str(err.value)
    other = str(tmp_path / 'other.npz')
    np.savez(other, x=np.zeros(2))
    with pytest.raises(ReIDUserError, match='tools/test.py --out'):
        threshold_at_fpr(other)
    with pytest.raises(FileNotFoundError):
        threshold_at_fpr(osp.join(str(tmp_path), 'missing.npz'))
