"""What the test folders share: the repository path, a loader for the
scripts under ``tools/``, the tiny generated-benchmark runner config, tiny
trees of the real datasets' layouts and a reader of the training scalars.

Importable as ``helpers`` from every test module: ``tests/conftest.py``
puts this folder on ``sys.path`` (pytest's ``prepend`` import mode, the
test folders have no ``__init__.py``); the fixtures built on it live there.
"""
import glob
import importlib.util
import json
import os
import os.path as osp
import time
from typing import Dict, Mapping, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')


def load_tool(path: str, name: Optional[str] = None):
    """Import a script by its path (``tools/*.py`` are no package).

    Args:
        path (str): The script, relative to the repository root (e.g.
            ``'tools/train.py'``) or absolute.
        name (str, optional): The module's name. Defaults to ``_tool_`` and
            the file's stem.

    Returns:
        module: A fresh module (executed anew on every call, not put into
        ``sys.modules``).
    """
    path = osp.join(REPO, str(path))
    stem = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name or f'_tool_{stem}',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LabelDataset:
    """Minimal dataset for samplers: only labels (``get_gt_labels``)."""

    def __init__(self, labels):
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def get_gt_labels(self):
        return self.labels


def feature_maps(n: int, c: int, h: int, w: int,
                 seed: int = 0) -> torch.Tensor:
    """Random feature maps [n, c, h, w], L2-normalised over the channels
    (as the neck gives them), drawn from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, c, h, w, generator=gen), dim=1)


def checkpoint_state(path: str) -> Dict[str, torch.Tensor]:
    """The ``state_dict`` of a checkpoint file."""
    return torch.load(path, map_location='cpu',
                      weights_only=True)['state_dict']


def read_scalars(work_dir: str) -> list:
    """The records of the one ``vis_data/scalars.json`` of a run."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------
# The tiny generated-benchmark config
#
# 64x32 input (ResNet-18-IBN to layer3: 4x2 maps), a few generated
# identities of camera-style domain A (train, query, gallery) and of the
# unseen domain B; every value a test does not choose is the demo's.

#: The base config of each model kind.
DEMOS = dict(
    qaconv='qaconv_gs_demo.py',
    global_embedding='gs_r18_global_demo.py',
    class_memory='qaconv_cm_demo.py')

#: The test pipeline at 64x32 (the generated images are 64x32 already).
TEST_PIPELINE = """\
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='PackReIDInputs'),
]
"""

#: Training augmentations by name, inserted after the Resize in this order.
AUGMENTATIONS = dict(
    flip="dict(type='RandomFlip', prob=0.5, direction='horizontal')",
    jitter="dict(type='ReIDColorJitter', brightness=(0.5, 2.0))",
    occlusion="dict(type='RandomOcclusion', min_size=0., max_size=0.5, "
    'prob=0.5)')

_DATA = """\
synthetic_root = {root!r}
domain_a = dict(type='SyntheticReID', data_root=synthetic_root + '/A',
                domain='A', num_train_ids={train_ids}, num_test_ids={test_ids},
                num_cams=2, imgs_per_cam=2, img_size={img_size!r})
domain_b = dict(domain_a, data_root=synthetic_root + '/B', domain='B',
                num_test_ids={b_test_ids})
"""

_RUN = """\
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
{augment}    dict(type='PackReIDInputs'),
]
train_dataloader = dict(
    batch_size={batch_size}, num_workers={workers},
    persistent_workers={persistent},
    sampler=dict(batch_size={batch_size}, num_instances={num_instances}),
    dataset=dict(domain_a, split='train', pipeline=train_pipeline))
# _delete_: these sets only, not the demo's merged with them
test_sets = dict(
    _delete_=True,
{sets})
custom_hooks = [
{hooks}]
test_dataloader = dict(batch_size={test_batch_size}, num_workers=0)
val_dataloader = test_dataloader
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets,
                progress={progress})
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
train_cfg = dict(max_epochs={epochs}, val_interval={val_interval})
"""


def config_header(model: str = 'qaconv') -> str:
    """``_base_`` (the demo config of ``model``) and the 64x32 input."""
    demo = osp.join(CONFIGS, DEMOS[model])
    return f'_base_ = [{demo!r}]\nimg_height, img_width = 64, 32\n'


def model_config(model: str = 'qaconv', channels: int = 16,
                 num_classes: int = 12) -> str:
    """``model = ...``: ResNet-18-IBN with ``channels`` base channels (layer3
    has 4x as many) and the head of ``model``: ``'qaconv'`` (neck to
    2 x ``channels``, 4x2 maps), ``'class_memory'`` (the same with a
    ``num_classes`` memory) or ``'global_embedding'`` (GeM pooling and a
    ``num_classes`` classifier)."""
    backbone = (f"backbone=dict(type='ResNetIBN', depth=18, "
                f'base_channels={channels})')
    if model == 'global_embedding':
        return (f'model = dict(\n    {backbone},\n'
                f'    head=dict(in_channels={4 * channels}, '
                f"num_classes={num_classes}, pooling='gem'))\n")
    feat = 2 * channels
    loss = '' if model == 'qaconv' else (
        f',\n              loss=dict(num_classes={num_classes}, '
        f'num_features={feat}, height=4, width=2)')
    return (f'model = dict(\n    {backbone},\n'
            f'    neck=dict(in_channels={4 * channels}, '
            f'out_channels={feat}),\n'
            f'    head=dict(num_features={feat}, height=4, width=2{loss}))\n')


def data_config(root: str, train_ids: int = 12, test_ids: int = 6,
                b_test_ids: Optional[int] = None,
                img_size: Sequence[int] = (64, 32)) -> str:
    """``domain_a`` / ``domain_b``: the generated benchmark's camera-style
    domains in ``root/A`` and ``root/B`` (2 cameras, 2 images a camera,
    ``img_size`` (h, w) files; domain B has ``b_test_ids`` test ids, by
    default as many as A)."""
    return _DATA.format(
        root=str(root), train_ids=train_ids, test_ids=test_ids,
        b_test_ids=test_ids if b_test_ids is None else b_test_ids,
        img_size=tuple(img_size))


def _call(fields: Mapping) -> str:
    """A dict literal as config text, ``dict(k=v, ...)``; a value of type
    :class:`Ref` is written as the name it holds."""
    return 'dict(' + ', '.join(f'{k}={v!r}' for k, v in fields.items()) + ')'


class Ref(str):
    """A config variable's name, written without quotes by :func:`_call`."""

    def __repr__(self):
        return str(self)


def tiny_config_text(root: str,
                     model: str = 'qaconv',
                     channels: int = 16,
                     train_ids: int = 12,
                     test_ids: int = 6,
                     b_test_ids: Optional[int] = None,
                     test_sets: Optional[Mapping[str, str]] = None,
                     augment: Sequence[str] = ('flip', 'occlusion'),
                     batch_size: int = 16,
                     num_instances: int = 4,
                     workers: int = 0,
                     graph_hook: Union[bool, Mapping] = True,
                     hooks: Sequence[Mapping] = (),
                     test_batch_size: Optional[int] = None,
                     progress: bool = False,
                     epochs: int = 2,
                     val_interval: Optional[int] = None,
                     log_interval: Optional[int] = 4,
                     extra: str = '') -> str:
    """The tiny runner config (see :func:`write_tiny_config`)."""
    sets = test_sets or dict(synthetic_A='a', synthetic_B_unseen='b')
    graph = None
    if graph_hook is not False and graph_hook is not None:
        graph = dict(type='GraphSamplerHook', pipeline=Ref('test_pipeline'),
                     pk_epochs=1, batch_size=2 * batch_size,
                     save_graph=True)
        if isinstance(graph_hook, Mapping):
            graph.update(graph_hook)
    all_hooks = ([graph] if graph else []) + [dict(h) for h in hooks]
    text = config_header(model) + data_config(root, train_ids, test_ids,
                                              b_test_ids)
    text += TEST_PIPELINE + model_config(model, channels, train_ids)
    text += _RUN.format(
        augment=''.join(f'    {AUGMENTATIONS[a]},\n' for a in augment),
        batch_size=batch_size, workers=workers, persistent=workers > 0,
        num_instances=num_instances,
        sets=''.join(
            f"    {name}=dict(query=dict(domain_{domain}, split='query'),\n"
            f"{' ' * (len(name) + 10)}gallery=dict(domain_{domain}, "
            "split='gallery')),\n"
            for name, domain in sets.items()),
        hooks=''.join(f'    {_call(h)},\n' for h in all_hooks),
        test_batch_size=(2 * batch_size if test_batch_size is None else
                         test_batch_size),
        progress=progress, epochs=epochs,
        val_interval=epochs if val_interval is None else val_interval)
    if log_interval is not None:
        text += f'default_hooks = dict(logger=dict(interval={log_interval}))\n'
    return text + extra


def write_tiny_config(folder, name: str = 'tiny.py', **options) -> str:
    """Write the tiny generated-benchmark runner config into ``folder``.

    The data is generated into ``folder/data/{A,B}`` on first use.

    Args:
        folder (str | Path): Where the config (and the data) goes.
        name (str): The config's file name. Defaults to ``'tiny.py'``.
        **options: What differs between the tests that use it:

            - ``model``: ``'qaconv'`` (``configs/qaconv_gs_demo.py``),
              ``'global_embedding'`` (``configs/gs_r18_global_demo.py``) or
              ``'class_memory'`` (``configs/qaconv_cm_demo.py``);
            - ``channels`` (16): backbone base channels (4x2 maps of
              2 x ``channels`` features for QAConv);
            - ``train_ids`` (12), ``test_ids`` (6), ``b_test_ids`` (as
              ``test_ids``): generated identities per split of domain A,
              test identities of domain B;
            - ``test_sets``: ``name -> 'a' | 'b'`` (default ``synthetic_A``
              and ``synthetic_B_unseen``), for test and validation;
            - ``augment`` (``('flip', 'occlusion')``): names of
              :data:`AUGMENTATIONS` of the training pipeline;
            - ``batch_size`` (16), ``num_instances`` (4), ``workers`` (0,
              persistent when > 0) of the training dataloader;
            - ``graph_hook``: True (``GraphSamplerHook`` with ``pk_epochs=1``,
              ``batch_size`` = 2 x the batch, ``save_graph=True``), a dict of
              its arguments to change, or False (no hook);
            - ``hooks``: further custom hooks, dicts of constants;
            - ``test_batch_size`` (2 x the batch), ``progress`` (False);
            - ``epochs`` (2), ``val_interval`` (``epochs``), ``log_interval``
              (4; None: the demo's);
            - ``extra``: config text appended (later assignments win).

    Returns:
        str: The config's path.
    """
    os.makedirs(str(folder), exist_ok=True)
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(tiny_config_text(osp.join(str(folder), 'data'), **options))
    return path


# ---------------------------------------------------------------------------
# Tiny trees in the layouts of the real datasets (8x4 images, a few ids)

#: Market-1501: 3 train ids; test ids 3 and 4, a distractor (0000) and junk
#: (-1) in the gallery.
TINY_MARKET = {
    'bounding_box_train': [
        '0002_c1s1_000100_01.jpg', '0002_c2s1_000150_01.jpg',
        '0007_c1s1_000300_01.jpg', '0007_c3s1_000310_01.jpg',
        '0012_c2s2_000020_01.jpg', '0012_c3s2_000040_01.jpg'
    ],
    'query': ['0003_c1s1_000400_00.jpg', '0004_c2s1_000900_00.jpg'],
    'bounding_box_test': ['0003_c2s2_000070_01.jpg',
                          '0004_c3s1_000905_01.jpg',
                          '0000_c2s2_000030_02.jpg',
                          '-1_c1s1_000999_02.jpg'],
}
#: CUHK03-NP (both versions): 3 train ids, test ids 10..12.
TINY_CUHK03 = {
    'bounding_box_train': ['0001_c1_1.png', '0001_c2_2.png', '0002_c1_1.png',
                           '0002_c2_1.png', '0003_c1_1.png', '0003_c2_2.png'],
    'query': ['0010_c1_1.png', '0011_c2_1.png'],
    'bounding_box_test': ['0010_c2_2.png', '0011_c1_2.png', '0012_c1_1.png'],
}
#: MSMT17: train/val ids 0..3, test ids restarting at 0.
TINY_MSMT17 = {
    'list_train.txt': [('0000/0000_000_01_0303morning_0015_0.jpg', 0),
                       ('0000/0000_001_03_0303morning_0036_1.jpg', 0),
                       ('0002/0002_000_15_0303noon_0100_0.jpg', 2),
                       ('0002/0002_001_14_0303noon_0101_0.jpg', 2)],
    'list_val.txt': [('0001/0001_000_02_0303noon_0007_0.jpg', 1),
                     ('0003/0003_000_04_0303noon_0008_0.jpg', 3)],
    'list_query.txt': [('0000/0000_000_05_0303morning_0008_0.jpg', 0),
                       ('0001/0001_000_06_0303morning_0009_0.jpg', 1)],
    'list_gallery.txt': [('0000/0000_001_07_0303noon_0010_0.jpg', 0),
                         ('0001/0001_002_06_0303noon_0011_0.jpg', 1),
                         ('0002/0002_000_09_0303noon_0012_0.jpg', 2)],
}
#: CUHK-SYSU crops: ids 1, 5, 7, 9.
TINY_CUHK_SYSU = ['p1_s1.jpg', 'p1_s2.jpg', 'p5_s3.jpg', 'p5_s9.jpg',
                  'p7_s4.jpg', 'p7_s5.jpg', 'p9_s6.jpg', 'p9_s7.jpg']


def write_image(path: str, value: int = 128, size=(8, 4)) -> str:
    """Write a small solid image (one red pixel) to ``path``."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.full((size[0], size[1], 3), value, np.uint8)
    img[0, 0] = (0, 0, 255)
    assert cv2.imwrite(path, img), path
    return path


def make_image_tree(root: str, files: Mapping[str, Sequence[str]]) -> str:
    """Write ``folder -> file names`` (relative to ``root``) as images."""
    for folder, names in files.items():
        os.makedirs(osp.join(root, folder), exist_ok=True)
        for i, name in enumerate(names):
            write_image(osp.join(root, folder, name), 40 + 10 * i)
    return root


def make_tiny_reid_trees(root: str) -> Dict[str, str]:
    """Tiny Market-1501, CUHK03-NP (detected and labeled), MSMT17 (V1
    layout) and CUHK-SYSU trees under ``root``.

    Returns:
        dict: dataset type (``'Market1501'``, ``'CUHK03NP'``, ``'MSMT17'``,
        ``'CUHKSYSU'``) -> its ``data_root``.
    """
    roots = dict(Market1501=osp.join(str(root), 'market1501'),
                 CUHK03NP=osp.join(str(root), 'cuhk03_np'),
                 MSMT17=osp.join(str(root), 'msmt17'),
                 CUHKSYSU=osp.join(str(root), 'cuhk_sysu'))
    make_image_tree(roots['Market1501'], TINY_MARKET)
    for mode in ('detected', 'labeled'):
        make_image_tree(roots['CUHK03NP'],
                        {f'{mode}/{k}': v for k, v in TINY_CUHK03.items()})
    for list_name, lines in TINY_MSMT17.items():
        img_dir = 'train' if list_name in ('list_train.txt',
                                           'list_val.txt') else 'test'
        for rel, _ in lines:
            write_image(osp.join(roots['MSMT17'], img_dir, rel))
        with open(osp.join(roots['MSMT17'], list_name), 'w') as f:
            f.write(''.join(f'{rel} {pid}\n' for rel, pid in lines))
    make_image_tree(roots['CUHKSYSU'], {'cropped_images': TINY_CUHK_SYSU})
    return roots


def point_datasets_at(node, roots: Mapping[str, str], **fields):
    """Set the ``data_root`` of every dataset config inside a config node
    (dicts and lists, recursively) whose ``type`` is in ``roots``, and the
    ``fields`` of every dataset config of those types; in place.

    Args:
        node (dict | list): A config or a part of it.
        roots (Mapping): dataset type -> ``data_root``, or a function of the
            dataset config giving it (e.g. by ``domain``).
        **fields: Other arguments to set.

    Returns:
        int: The number of dataset configs changed.
    """
    count = 0
    if isinstance(node, Mapping):
        if node.get('type') in roots:
            root = roots[node['type']]
            node['data_root'] = root(node) if callable(root) else root
            node.update(fields)
            count += 1
        for value in node.values():
            count += point_datasets_at(value, roots, **fields)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += point_datasets_at(value, roots, **fields)
    return count


#: The tiny test-loop setting of the loop tests (test_reid_test_loop.py,
#: test_shortlist_loop.py): 32x16 inputs, 2x1 maps, both kinds of model.
LOOP_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(16, 32), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='PackReIDInputs'),
]
_LOOP_BACKBONE = dict(type='ResNetIBN', depth=18, base_channels=8,
                      num_stages=3, out_indices=(2, ), norm_eval=False)
LOOP_MODELS = dict(
    qaconv=dict(
        type='QAConvReID', backbone=_LOOP_BACKBONE,
        neck=dict(type='QAConvNeck', in_channels=32, out_channels=16),
        head=dict(type='QAConvHead', num_features=16, height=2, width=1)),
    global_embedding=dict(
        type='ReIDModel', backbone=_LOOP_BACKBONE,
        head=dict(type='GlobalEmbeddingHead', in_channels=32)))


def loop_test_sets(data_root: str) -> dict:
    """One tiny SyntheticReID test set (5 identities, 2 cameras) under
    ``data_root``, as the loop tests' ``test_sets``."""
    split = dict(type='SyntheticReID', data_root=data_root, domain='A',
                 num_train_ids=0, num_test_ids=5, num_cams=2,
                 imgs_per_cam=2, img_size=(32, 16), serialize_data=False)
    return dict(synthetic=dict(query=dict(split, split='query'),
                               gallery=dict(split, split='gallery')))


def dist_init_method(folder) -> str:
    """A ``file://`` rendezvous in ``folder`` for tests that spawn their
    own gloo processes: unlike a free TCP port picked in advance, it cannot
    be taken by another test run on the same machine in between."""
    path = osp.abspath(osp.join(str(folder), 'dist_store'))
    if osp.exists(path):  # a store is for one group only
        os.remove(path)
    return f'file://{path}'


def experiment_name(prefix: str = 'test') -> str:
    """A name no other Runner of this process has: Runners built in the same
    second would otherwise share MMEngine's timestamp name, and MMEngine
    warns ("get_instance should not accept any other arguments") when a
    second Runner asks for the first one's logger and visualizer."""
    return f'{prefix}_{time.time_ns()}'
