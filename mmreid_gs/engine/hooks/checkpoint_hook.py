"""MMEngine's CheckpointHook, writing atomically."""
import contextlib
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

from mmreid_gs.engine.checkpoint import (save_checkpoint_atomic,
                                         write_text_atomic)
from mmreid_gs.registry import HOOKS


@contextlib.contextmanager
def _atomic_saves(runner):
    """Inside, ``runner.save_checkpoint`` writes atomically (see
    :func:`~mmreid_gs.engine.checkpoint.save_checkpoint_atomic`)."""
    save = runner.save_checkpoint

    def atomic(out_dir, filename, *args, **kwargs):
        return save_checkpoint_atomic(save, out_dir, filename, *args,
                                      **kwargs)

    runner.save_checkpoint = atomic
    try:
        yield
    finally:
        del runner.save_checkpoint  # the class's method again


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """MMEngine's :class:`~mmengine.hooks.CheckpointHook` (same arguments),
    with checkpoints written atomically.

    Registered under MMEngine's name in the ``mmreid_gs`` scope, so every
    config with ``default_scope='mmreid_gs'`` and
    ``dict(type='CheckpointHook', ...)`` gets it
    (``type='mmengine.CheckpointHook'`` is MMEngine's). Differences, local
    folders only (other storage backends save as MMEngine does):

    - every checkpoint (``epoch_N.pth``, ``iter_N.pth``, ``best_*.pth``) is
      written to a temporary file in its folder, flushed and fsynced, then
      renamed over its name: a crash or power loss leaves the previous file
      or the complete new one, never a truncated one;
    - ``last_checkpoint`` is rewritten (atomically, the same way) only after
      the checkpoint it names is complete;
    - with ``max_keep_ckpts``, the oldest checkpoint is deleted after the
      new one is saved (MMEngine deletes it before saving, so a crash during
      the save could leave no checkpoint at all).

    ``tools/train.py --resume`` without a path resumes from the newest
    readable checkpoint (:func:`~mmreid_gs.engine.checkpoint.
    find_resumable_checkpoint`).
    """

    def after_train_epoch(self, runner) -> None:
        """Save at the end of an epoch (MMEngine's rule; its log line said
        "at 1 epochs")."""
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval, self.save_begin) or (
                self.save_last and self.is_last_train_epoch(runner)):
            runner.logger.info(
                f'Saving checkpoint after epoch {runner.epoch + 1}')
            self._save_checkpoint(runner)

    def _local(self) -> bool:
        return '://' not in str(self.out_dir) and (
            self.file_client_args is None
            or self.file_client_args.get('backend') in (None, 'disk',
                                                        'local'))

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        save_checkpoint_atomic(
            runner.save_checkpoint,
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        write_text_atomic(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if outdated is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self._local():
            return super()._save_best_checkpoint(runner, metrics)
        with _atomic_saves(runner):
            super()._save_best_checkpoint(runner, metrics)
