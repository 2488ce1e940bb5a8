"""Draw the Graph Sampler's class neighbours over epochs (the GS paper's
Fig. 5) and how often they are look-alikes.

    python tools/visualization/vis_graph.py WORK_DIR [--epochs 2 8 15] \
        [--classes N | --class-ids C ...] [--out FILE.png] \
        [--family-curve FILE.png] [--config CONFIG]

Reads the dumps of ``GraphSamplerHook(save_graph=True)``
(``WORK_DIR/graph/epoch_k.npz``). One row per centre class (blue frame: the
image the hook used for it), then its P-1 neighbours, one block per epoch.
When the families of look-alike identities are known (the dumps'
``label_families``, or the train dataset of ``--config`` / the config saved
in WORK_DIR having ``get_label_families()``, e.g. SyntheticReID),
neighbours of the centre's family are framed green, others grey, and
``--family-curve`` plots the share of look-alike neighbours per epoch
against random neighbours. Default output: ``WORK_DIR/graph/neighbors.png``.
"""
import argparse
import glob
import os.path as osp
import sys

import numpy as np

from mmreid_gs.engine.graph import load_graph_dumps
from mmreid_gs.cli import load_config, run_cli
from mmreid_gs.evaluation.functional import graph_family_share
from mmreid_gs.utils.errors import ConfigError
from mmreid_gs.visualization import (class_graph_epoch, spread_indices,
                                     tool_visualizer)
from mmreid_gs.visualization.backends import VIS_BACKENDS
from mmreid_gs.visualization.plots import plot_family_share


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw class-graph neighbours of GS training')
    parser.add_argument('work_dir', help='work dir of a run with save_graph')
    parser.add_argument('--epochs', type=int, nargs='+',
                        help='epochs to show side by side (default: the '
                        'first, middle and last dump)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--classes', type=int, default=8,
                       help='number of centre classes (default 8)')
    group.add_argument('--class-ids', type=int, nargs='+',
                       help='centre class labels')
    parser.add_argument('--out', help='output picture (default '
                        'WORK_DIR/graph/neighbors.png)')
    parser.add_argument('--family-curve', help='also plot the look-alike '
                        'share per epoch to this picture')
    parser.add_argument('--config', help='config whose train dataset gives '
                        'the families (default: the config saved in '
                        'WORK_DIR) when the dumps lack them')
    parser.add_argument('--cell-size', type=int, nargs=2,
                        metavar=('H', 'W'),
                        help='size of each drawn image (default 128 64)')
    parser.add_argument('--vis-backend', nargs='+', default=[],
                        choices=sorted(VIS_BACKENDS),
                        help='also send the picture to these backends')
    return parser.parse_args(argv)


def families_from_config(path):
    """Label families of a config's train dataset, or None."""
    from mmengine.registry import DefaultScope

    from mmreid_gs.registry import DATASETS
    from mmreid_gs.utils import register_all_modules
    cfg = load_config(path)
    dataset_cfg = cfg.get('train_dataloader', {}).get('dataset')
    if dataset_cfg is None:
        return None
    register_all_modules(init_default_scope=False)
    dataset_cfg = dict(dataset_cfg, pipeline=[])
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        dataset = DATASETS.build(dataset_cfg)
    get = getattr(dataset, 'get_label_families', None)
    return None if get is None else np.asarray(get())


def find_families(args, dumps):
    for fields in dumps.values():
        if 'label_families' in fields:
            return fields['label_families']
    path = args.config
    if path is None:
        saved = glob.glob(osp.join(args.work_dir, '*.py'))
        if len(saved) != 1:
            return None
        path = saved[0]
    try:
        return families_from_config(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f'note: no families from {path}: {err}', file=sys.stderr)
        return None


def main(argv=None):
    args = parse_args(argv)
    if not osp.isdir(args.work_dir):
        raise ConfigError(f'work dir not found: {args.work_dir}')
    dumps = load_graph_dumps(args.work_dir)
    available = sorted(dumps)
    if args.epochs:
        missing = [e for e in args.epochs if e not in dumps]
        if missing:
            raise ConfigError(
                f'no graph of epoch {missing[0]} in {args.work_dir}/graph; '
                f'epochs saved: {" ".join(map(str, available))}')
        epochs = list(args.epochs)
    else:
        epochs = [available[i] for i in spread_indices(len(available), 3)]
    num_classes = len(dumps[epochs[0]]['img_paths'])
    if args.class_ids:
        classes = args.class_ids
    else:
        if args.classes < 1:
            raise ConfigError('--classes must be >= 1')
        classes = spread_indices(num_classes, args.classes)
    families = find_families(args, dumps)
    if families is not None and len(families) < num_classes:
        families = None
    blocks = [
        class_graph_epoch(e, dumps[e]['neighbors'], dumps[e]['img_paths'],
                          classes, families) for e in epochs
    ]
    out = args.out or osp.join(args.work_dir, 'graph', 'neighbors.png')
    vis = tool_visualizer('vis_graph', args.vis_backend,
                          osp.dirname(osp.abspath(out)),
                          cell_size=args.cell_size)
    vis.add_class_graph('graph_neighbors', blocks, out_file=out)
    print(out)
    if families is None:
        if args.family_curve:
            raise ConfigError(
                '--family-curve: the families of look-alikes are unknown '
                '(no label_families in the dumps and no dataset with '
                'get_label_families(); pass --config)')
        return
    print('epoch  look-alike share  random neighbours  most possible')
    shares, randoms = [], []
    for e in available:
        q = graph_family_share(dumps[e]['neighbors'], families)
        shares.append(q['share'])
        randoms.append(q['random'])
        print(f'{e:5d}  {100 * q["share"]:15.1f}%  {100 * q["random"]:16.1f}%'
              f'  {100 * q["best"]:12.1f}%')
    if args.family_curve:
        plot_family_share(available, shares, randoms, args.family_curve,
                          best=q['best'])
        print(args.family_curve)


if __name__ == '__main__':
    sys.exit(run_cli(main))
