"""Training wall-clock time, validation excluded, as a run's timeline."""
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmreid_gs.registry import HOOKS

#: the timeline file in a run's work dir
CLOCK_FILE = 'clock.jsonl'


@HOOKS.register_module()
class WallClockHook(Hook):
    """Write a run's timeline: after every training epoch and every
    validation, one JSON line in ``<work_dir>/clock.jsonl`` with the epoch,
    the iteration and the seconds of training so far.

    ``train_seconds`` counts everything from the start of training except
    validation (data loading, forward / backward, the class graph built
    before GS epochs, checkpoints): the time-to-accuracy of a sampler or a
    loss, the paper's Fig. 2 axis. ``wall_seconds`` counts validation too.
    A resumed run continues the count from its checkpoint (the seconds are
    kept in the checkpoint's meta), so time spent before an interruption is
    counted once and the time between the interruption and the resume not
    at all. Validation lines carry the metrics, so a timeline alone gives
    accuracy against time.

    Args:
        filename (str): The timeline's name in the work dir. Defaults to
            ``'clock.jsonl'``.
        max_train_seconds (float, optional): A training wall-clock budget:
            after the first epoch that ends past it, training stops (that
            epoch is still validated, as the loop validates after every
            epoch). None: no budget.
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = CLOCK_FILE,
                 max_train_seconds: Optional[float] = None):
        if max_train_seconds is not None and not max_train_seconds > 0:
            raise ValueError('WallClockHook: max_train_seconds must be > 0 '
                             f'or None, got {max_train_seconds!r}')
        self.filename = filename
        self.max_train_seconds = max_train_seconds
        self._offset_train = 0.
        self._offset_wall = 0.
        self._start: Optional[float] = None
        self._val_total = 0.
        self._val_start: Optional[float] = None

    # ------------------------------------------------------------------ time
    def _now(self) -> Dict[str, float]:
        if self._start is None:
            return dict(train_seconds=self._offset_train,
                        wall_seconds=self._offset_wall)
        elapsed = time.perf_counter() - self._start
        val = self._val_total
        if self._val_start is not None:  # inside a validation
            val += time.perf_counter() - self._val_start
        return dict(train_seconds=self._offset_train + elapsed - val,
                    wall_seconds=self._offset_wall + elapsed)

    def _write(self, runner, event: str, **extra) -> None:
        if not is_main_process():
            return
        row = dict(event=event, epoch=int(runner.epoch),
                   iter=int(runner.iter), time=time.time(), **self._now())
        row.update(extra)
        path = osp.join(runner.work_dir, self.filename)
        os.makedirs(runner.work_dir, exist_ok=True)
        with open(path, 'a') as f:
            f.write(json.dumps(row) + '\n')

    # ----------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self._val_total = 0.
        self._write(runner, 'start')

    def after_train_epoch(self, runner) -> None:
        self._write(runner, 'train_epoch')
        spent = self._now()['train_seconds']
        if self.max_train_seconds is not None and \
                spent >= self.max_train_seconds and \
                hasattr(runner.train_loop, 'stop_training'):
            runner.logger.info(
                f'WallClockHook: {spent:.0f} s of training reached the '
                f'budget of {self.max_train_seconds:.0f} s: training stops '
                f'after epoch {runner.epoch}')
            runner.train_loop.stop_training = True

    def before_val_epoch(self, runner) -> None:
        if self._start is not None:
            self._val_start = time.perf_counter()

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._start is None or self._val_start is None:
            return
        self._val_total += time.perf_counter() - self._val_start
        self._val_start = None
        values = {k: float(v) for k, v in (metrics or {}).items()
                  if isinstance(v, (int, float))}
        self._write(runner, 'val', metrics=values)

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        checkpoint.setdefault('meta', {})['wall_clock'] = self._now()

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        saved = (checkpoint.get('meta') or {}).get('wall_clock') or {}
        self._offset_train = float(saved.get('train_seconds', 0.))
        self._offset_wall = float(saved.get('wall_seconds', 0.))


def read_clock(work_dir: str, filename: str = CLOCK_FILE) -> List[Dict]:
    """A run's timeline (:class:`WallClockHook`): its JSON lines in order;
    after a resume, the lines of epochs trained again replace the earlier
    ones (the last written wins).

    Args:
        work_dir (str): The run's work dir.
        filename (str): The timeline's name. Defaults to ``'clock.jsonl'``.

    Returns:
        list[dict]: ``event`` (``'train_epoch'`` or ``'val'``), ``epoch``,
        ``iter``, ``train_seconds``, ``wall_seconds`` (and ``metrics`` for
        validations), sorted by iteration; empty when there is no file.
    """
    path = osp.join(work_dir, filename)
    if not osp.isfile(path):
        return []
    rows = {}
    with open(path) as f:
        lines = [line.strip() for line in f]
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # cut by a kill mid-write
                continue
            raise ValueError(f'{path}, line {number}: not JSON ({exc})')
        if row.get('event') in ('train_epoch', 'val'):
            rows[(row['event'], int(row['epoch']))] = row
    return sorted(rows.values(), key=lambda r: (r['iter'], r['event']))
