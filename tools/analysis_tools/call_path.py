"""Count the package functions and files one training batch and one test
pass through: how deep the layout makes a reader follow the data.

    python tools/analysis_tools/call_path.py [--config configs/qaconv_gs_demo.py]

It builds MMEngine's runner from the config (2 training epochs, so that the
second is a Graph Sampler epoch; no workers, so the data pipeline runs in
this process), traces every Python call into ``mmreid_gs`` while

- the second training epoch fetches and trains its second batch (sampler,
  dataset, pipeline, data preprocessor, model, loss, hooks), and
- the test of the first named test set runs (features of every query and
  gallery image, matching, the evaluator and the metric: the functions one
  query passes through),

and prints, for each, the distinct functions and files of the package that
were entered, and with ``--list`` the functions themselves. It uses only
MMEngine's own runner and the registries, so it runs on older states of
the code too (e.g. a ``git worktree`` of an earlier commit with
``PYTHONPATH`` pointing at it).
"""
import argparse
import copy
import os.path as osp
import sys
import tempfile
from collections import defaultdict

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mmreid_gs
from mmreid_gs.utils import register_all_modules

PACKAGE = osp.dirname(osp.abspath(mmreid_gs.__file__))


class _Tracer:
    """Record ``(file, function)`` of every call into the package."""

    def __init__(self):
        self.calls = defaultdict(int)
        self.active = False

    def __call__(self, frame, event, arg):
        if event == 'call':
            path = frame.f_code.co_filename
            if path.startswith(PACKAGE):
                rel = osp.relpath(path, osp.dirname(PACKAGE))
                self.calls[(rel, frame.f_code.co_qualname)] += 1
        return None

    def start(self):
        self.active = True
        sys.setprofile(self)

    def stop(self):
        sys.setprofile(None)
        self.active = False


class _Done(Exception):
    pass


class _TraceOneBatch(Hook):
    """Trace from the end of the first iteration of ``epoch`` to the end of
    its second: the second batch's fetch and its training step."""

    priority = 'VERY_LOW'

    def __init__(self, tracer, epoch):
        self.tracer, self.epoch = tracer, epoch

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.epoch != self.epoch:
            return
        if batch_idx == 0:
            self.tracer.start()
        elif batch_idx == 1:
            self.tracer.stop()
            raise _Done


def _report(name, calls, show):
    files = sorted({f for f, _ in calls})
    print(f'{name}: {len(calls)} functions in {len(files)} files of the '
          'package')
    if show:
        for (f, fn), n in sorted(calls.items()):
            print(f'    {f}: {fn} ({n} calls)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/qaconv_gs_demo.py')
    parser.add_argument('--list', action='store_true',
                        help='list the functions')
    args = parser.parse_args(argv)
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(args.config)
    cfg.work_dir = tempfile.mkdtemp(prefix='call_path_')
    cfg.train_cfg.max_epochs = 2
    cfg.train_cfg.val_interval = 100
    for key in ('train_dataloader', 'test_dataloader', 'val_dataloader'):
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    sets = cfg.test_cfg.test_sets
    first = next(iter(sets))
    cfg.test_cfg.test_sets = {first: copy.deepcopy(sets[first])}

    tracer = _Tracer()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_TraceOneBatch(tracer, epoch=1))
    try:
        runner.train()
    except _Done:
        pass
    batch = dict(tracer.calls)

    tracer = _Tracer()
    tracer.start()
    try:
        runner.test()
    finally:
        tracer.stop()
    _report('one training batch (GS epoch: fetch + train step + hooks)',
            batch, args.list)
    _report(f'one test set ({first}: features, matching, metric)',
            dict(tracer.calls), args.list)


if __name__ == '__main__':
    main()
