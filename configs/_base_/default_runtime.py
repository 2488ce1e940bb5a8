default_scope = 'mmreid_gs'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # MMEngine's LoggerHook; also logs the first iteration and the last of
    # every epoch whatever the interval; test summary JSON by rank 0 only
    logger=dict(type='ReIDLoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    # calls sampler.set_epoch() before every epoch (GraphSampler too)
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # augmentation randomness from (seed, epoch): exact --resume
    epoch_seed=dict(type='EpochSeedHook'),
    # DDP: average BN statistics across ranks after every epoch, so that the
    # checkpoint, the next class graph and validation use one model
    sync_buffers=dict(type='SyncBuffersHook'),
    # logs train/batch_lookalike_share every epoch (any sampler; only for
    # datasets that know families of look-alikes, e.g. SyntheticReID). A
    # default hook, so that configs that replace custom_hooks keep it.
    batch_hardness=dict(type='BatchLookalikeShareHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Add dict(type='TensorboardVisBackend') (pip install tensorboard), or pass
# `--vis-backend tensorboard` to tools/train.py / test.py, to see the scalars
# and pictures (ReIDVisualizationHook, GraphSamplerHook with visualize=True)
# in TensorBoard.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ReIDVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

# The lr of a config is set for a total batch of base_batch_size. The batch
# of a config is per process: tools/dist_train.sh with N processes trains on
# N x batch_size. `tools/train.py --auto-scale-lr` (enable=True) multiplies
# the lr by (N x batch_size) / base_batch_size.
auto_scale_lr = dict(enable=False, base_batch_size=64)
