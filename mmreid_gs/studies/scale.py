"""The scale study: GS against PK (and DFGS, the class memory) as the number
of training identities grows.

Its config is ``configs/studies/scale.py``: the samplers, the starts
(``scratch``, ``pretrained``) and the presets. Every run of a preset has the
same number of iterations (``epochs x batches_per_epoch``, the
GraphSampler's fixed epoch length) whatever its number of training
identities; a GS run spends its first ``pk_epochs`` on random PK batches.
``pretrain``: the network of the ``pretrained`` start, trained once with PK
on other people (another generation seed of the same domain: other
identities and cameras of the same style) and loaded by ``load_from``.
``num_candidates`` / ``candidates_from``: the two-stage class graph from
that many classes on (None: exact everywhere). ``val_interval``: validate
every that many epochs (default: once, at the end).

:func:`plan_scale_runs` plans samplers x identity counts x starts x seeds;
:func:`run_scale_study` trains them in
``<work_dir>/<start>/n<count>/<variant>/seed<k>/`` on a SyntheticReID
training set of that many identities (one generated folder per count,
reused), appends each finished run to ``docs/studies/scale/runs.jsonl``
(skipping the runs already there) and writes the work dir's tables and
plot; ``--dry-run`` prints the plan and its estimated time
(:func:`estimate_scale_seconds`).
"""
import copy
import csv
import json
import math
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from mmreid_gs.cli import load_config
from mmreid_gs.utils import register_all_modules

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from .specs import config_path, load_study, study_preset
from .variants import (GRAPH_SAMPLERS, _chosen, _configure_run, _set_schedule,
                       _train_run, apply_variant, finished_run, is_recorded,
                       record_run, run_metrics, converged, study_warmup,
                       warmup_epochs)


#: Measured inputs of :func:`estimate_scale_seconds` (2-core CPU, demo
#: network at 128x64, B = 32): seconds per training iteration (0.2-0.3 s),
#: generated images per second (250-380), seconds per image of feature
#: extraction in eval mode (about 0.01), seconds per QAConv pair of 64x8x4
#: maps in the exact class graph (about 2.2e-6), and the fixed cost of a run
#: (runner, dataset indexing, checkpoints, one validation on the demo's two
#: test sets of about 1,700 images); ``val_seconds``: each further
#: validation (a preset's ``val_interval``; about 1,700 images extracted and
#: matched); ``memory_seconds_per_class``: what the class memory adds to an
#: iteration per training class (every batch is scored against the whole
#: memory: 2.4 s an iteration at 8,000 classes, measured 2026-12-07).
SCALE_COSTS = dict(sec_per_iter=0.25, images_per_sec=300.,
                   extract_per_image=0.012, pair_seconds=2.2e-6,
                   run_overhead=45., two_stage_speedup=6., val_seconds=25.,
                   memory_seconds_per_class=2.7e-4)


def plan_scale_runs(quick: bool = False,
                    seeds: Optional[Sequence[int]] = None,
                    variants: Optional[Sequence[str]] = None,
                    counts: Optional[Sequence[int]] = None,
                    starts: Optional[Sequence[str]] = None,
                    preset: Optional[str] = None,
                    study: str = 'scale'):
    """The runs of the scale study: variants x identity counts x starts x
    seeds (seed-major, so a study stopped early has every point for the
    first seeds).

    Args:
        quick (bool): The quick preset (else ``full``).
        seeds, variants, counts, starts (Sequence, optional): Override the
            preset's seeds, the samplers (``'pk'``, ``'gs'`` ...), the
            numbers of training identities and the starts (``'scratch'``,
            ``'pretrained'``).
        preset (str, optional): A preset by name (wins over ``quick``).
        study (str): The study config (``configs/studies/<study>.py``, of
            kind ``'scale'``).

    Returns:
        tuple: ``(runs, preset)``; a run is a dict with ``name``
        (``<start>/n<count>/<variant>``, its folder below the study's),
        ``variant``, ``spec`` (the variant dict), ``num_ids``, ``start``
        and ``seed``.
    """
    spec = load_study(study)
    name = preset or ('quick' if quick else 'full')
    preset = study_preset(spec, name)
    preset['name'] = name
    preset.setdefault('starts', tuple(spec['starts']))
    preset.setdefault('variants', tuple(spec['variants']))
    if seeds is not None:
        preset['seeds'] = tuple(int(s) for s in seeds)
    if counts is not None:
        bad = [c for c in counts if int(c) < 1]
        if bad:
            raise ValueError(f'sampler study scale: identity counts must be '
                             f'>= 1, got {bad}')
        preset['counts'] = tuple(int(c) for c in counts)
    names = _chosen('variant', 'scale', spec['variants'],
                    variants or preset['variants'])
    chosen = tuple(_chosen('start', 'scale', spec['starts'],
                           starts or preset['starts']))
    preset['starts'] = chosen
    runs = [
        dict(name=f'{start}/n{count}/{name}', variant=name,
             spec=spec['variants'][name], num_ids=count, start=start,
             seed=seed)
        for seed in preset['seeds'] for count in preset['counts']
        for start in chosen for name in names
    ]
    return runs, preset


def _synthetic_train_set(dataset: Dict, num_ids: int,
                         seed: Optional[int] = None,
                         tag: Optional[str] = None) -> ConfigDict:
    """The config's SyntheticReID training set with ``num_ids`` identities
    (and another generation ``seed``): the config's own folder when nothing
    changes, else a sibling folder ``<data_root>_<tag>`` (a generated tree
    is reused, never regenerated)."""
    ds = ConfigDict(copy.deepcopy(dataset))
    if ds.get('type') not in ('SyntheticReID', 'mmreid_gs.SyntheticReID'):
        raise ValueError('sampler study scale: the training set must be a '
                         'SyntheticReID (it generates any number of '
                         f"identities); got type {ds.get('type')!r}")
    same = int(ds.get('num_train_ids', 200)) == int(num_ids) and (
        seed is None or int(seed) == int(ds.get('seed', 0)))
    ds.num_train_ids = int(num_ids)
    if seed is not None:
        ds.seed = int(seed)
    if not same:
        ds.data_root = str(ds.data_root).rstrip('/\\') + '_' + (
            tag or f'n{int(num_ids)}')
    return ds


def _scale_base(cfg: Config, batches_per_epoch: int, epochs: int,
                milestones: Sequence[int], study: str = 'scale',
                val_interval: Optional[int] = None) -> None:
    """Fixed epoch length, the schedule, validation at the last epoch."""
    sampler = cfg.train_dataloader.sampler
    if sampler.get('type', 'GraphSampler') not in (
            'GraphSampler', 'mmreid_gs.GraphSampler', 'DepthFirstGraphSampler',
            'mmreid_gs.DepthFirstGraphSampler'):
        raise ValueError(f'sampler study {study}: the train sampler must be a '
                         "GraphSampler (batches_per_epoch); got type "
                         f"{sampler.get('type')!r}")
    sampler.batches_per_epoch = int(batches_per_epoch)
    _set_schedule(cfg, epochs, milestones)
    # tested every val_interval epochs; by default once, at the end
    cfg.train_cfg.val_interval = int(val_interval or epochs)


def pretrain_config(base: Config, preset: Dict) -> Config:
    """The config of the network of the ``pretrained`` start: PK on
    ``preset['pretrain']['num_ids']`` identities of another generation seed
    (other people than every study run's), validated on the config's test
    sets at its last epoch.

    Args:
        base (Config): The study's base config.
        preset (dict): A scale preset (its ``pretrain`` entry).

    Returns:
        Config: A new config (work dir, seed and resume set by the caller).
    """
    pre = preset['pretrain']
    cfg = copy.deepcopy(base)
    loader = cfg.train_dataloader
    if int(pre['seed']) == int(loader.dataset.get('seed', 0)):
        raise ValueError('sampler study scale: the pretraining seed must '
                         'differ from the training set\'s (other people); '
                         f"both are {pre['seed']}")
    loader.dataset = _synthetic_train_set(
        loader.dataset, pre['num_ids'], seed=pre['seed'],
        tag=f"pretrain_seed{pre['seed']}_n{pre['num_ids']}")
    apply_variant(cfg, dict(sampler='pk'), int(pre['num_ids']))
    _scale_base(cfg, pre['batches_per_epoch'], pre['epochs'],
                pre['milestones'])
    return cfg


def scale_run_config(base: Config, run: Dict, preset: Dict,
                     pretrained: Optional[str] = None) -> Config:
    """The config of one scale run: ``num_train_ids`` (and its data
    folder), the fixed ``batches_per_epoch``, the sampler variant (GS with
    the two-stage graph from ``candidates_from`` classes on), the schedule
    and, for the ``pretrained`` start, ``load_from``.

    Args:
        base (Config): The study's base config.
        run (dict): From :func:`plan_scale_runs`.
        preset (dict): The preset.
        pretrained (str, optional): The pretrained checkpoint (required by
            the ``pretrained`` start).

    Returns:
        Config: A new config; ``load_from`` is the pretrained checkpoint for
        the ``pretrained`` start (:func:`run_scale_study` resumes a started
        run from its own checkpoint instead).
    """
    cfg = copy.deepcopy(base)
    loader = cfg.train_dataloader
    loader.dataset = _synthetic_train_set(loader.dataset, run['num_ids'])
    apply_variant(cfg, run['spec'], run['num_ids'])
    _scale_base(cfg, preset['batches_per_epoch'], preset['epochs'],
                preset['milestones'], val_interval=preset.get('val_interval'))
    cand, start = preset.get('num_candidates'), preset.get('candidates_from')
    if cand is not None and start is not None and run['num_ids'] >= start:
        for hook in cfg.custom_hooks:
            if hook.get('type') == 'GraphSamplerHook':
                hook['num_candidates'] = cand
                if preset.get('candidate_fn'):
                    hook['candidate_fn'] = preset['candidate_fn']
                # its recall against the exact graph, on the first build of
                # the first seed's runs
                if preset.get('check_recall') and \
                        run['seed'] == min(preset['seeds']):
                    hook['check_recall'] = True
    if preset.get('max_train_seconds'):
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            ConfigDict(type='WallClockHook',
                       max_train_seconds=float(preset['max_train_seconds']))]
    cfg.load_from = None
    if run['start'] == 'pretrained':
        if not pretrained:
            raise ValueError('sampler study scale: the pretrained start '
                             'needs the pretrained checkpoint')
        cfg.load_from = pretrained
    elif run['start'] != 'scratch':
        raise ValueError(f"sampler study scale: unknown start "
                         f"{run['start']!r}")
    return cfg


def _train_scale_run(cfg: Config, run_dir: str, seed: int, experiment: str,
                     meta: Dict) -> None:
    # a new run starts from the pretrained weights; a started one resumes
    # from its own checkpoint (resume=True, load_from=None)
    _configure_run(cfg, run_dir, seed, experiment)
    _train_run(cfg, osp.join(run_dir, 'done.json'), meta)


def _dataset_images_per_id(dataset: Dict) -> float:
    """Expected images per identity of a SyntheticReID config."""
    cams = int(dataset.get('num_cams', 6))
    low = min(int(dataset.get('min_cams', 2)), cams)
    return int(dataset.get('imgs_per_cam', 2)) * (low + cams) / 2


def estimate_scale_seconds(base: Config, runs: List[Dict], preset: Dict,
                           costs: Optional[Dict] = None) -> Dict:
    """Predicted wall time of a scale study from measured unit costs
    (:data:`SCALE_COSTS`): an estimate, not a measurement.

    Training: runs x epochs x batches_per_epoch iterations (plus the
    pretraining) at ``sec_per_iter`` (with the class memory, plus
    ``memory_seconds_per_class`` x classes), a run capped by the preset's
    ``max_train_seconds`` stopping after the first epoch past it; the class
    graphs of the GS and DFGS epochs:
    one image per class extracted, C^2 QAConv pairs (over
    ``two_stage_speedup`` with the two-stage graph); data: the trees not
    generated yet are counted as if none were; a fixed cost per run.

    Returns:
        dict: Seconds of ``train``, ``graphs``, ``data``, ``overhead`` and
        ``total``, the number of ``runs`` (pretraining included) and
        ``iterations``.
    """
    c = dict(SCALE_COSTS, **(costs or {}))
    dataset = base.train_dataloader.dataset
    per_id = _dataset_images_per_id(dataset)
    test_ids = int(dataset.get('num_test_ids', 100))
    iters = preset['epochs'] * preset['batches_per_epoch']
    starts = {r['start'] for r in runs}
    pre = preset['pretrain']
    pre_iters = pre['epochs'] * pre['batches_per_epoch'] \
        if 'pretrained' in starts else 0
    graphs = train = 0.
    cap = float(preset.get('max_train_seconds') or 0)
    for r in runs:
        per_iter = c['sec_per_iter']
        if r['spec'].get('loss') == 'class_memory':
            per_iter += r['num_ids'] * c['memory_seconds_per_class']
        run_train = iters * per_iter
        if cap:
            epoch = preset['batches_per_epoch'] * per_iter
            run_train = min(run_train, math.ceil(cap / epoch) * epoch)
        train += run_train
        if r['spec'].get('sampler') not in GRAPH_SAMPLERS:
            continue
        n = r['num_ids']
        builds = max(0, preset['epochs'] - int(r['spec'].get('pk_epochs',
                                                             1)))
        score = n * n * c['pair_seconds']
        cand, start = preset.get('num_candidates'), preset.get(
            'candidates_from')
        if cand is not None and start is not None and n >= start:
            score /= c['two_stage_speedup']
        graphs += builds * (n * c['extract_per_image'] + score)
    counts = {r['num_ids'] for r in runs}
    ids = sum(n + test_ids for n in counts) + test_ids  # + unseen domain
    if pre_iters:
        ids += pre['num_ids'] + test_ids
    every = int(preset.get('val_interval') or preset['epochs'])
    extra_vals = max(0, preset['epochs'] // every - 1)
    out = dict(
        train=train + pre_iters * c['sec_per_iter'],
        graphs=graphs,
        validation=len(runs) * extra_vals * c.get('val_seconds', 0.),
        data=ids * per_id / c['images_per_sec'],
        overhead=(len(runs) + bool(pre_iters)) * c['run_overhead'])
    out['total'] = sum(out.values())
    out.update(runs=len(runs) + bool(pre_iters), iterations=iters)
    return out


def _describe_plan(runs, preset, estimate) -> str:
    return (
        f"{len(runs)} runs ({len({r['variant'] for r in runs})} samplers x "
        f"{len({r['num_ids'] for r in runs})} identity counts "
        f"{sorted({r['num_ids'] for r in runs})} x "
        f"{len({r['start'] for r in runs})} starts x "
        f"{len({r['seed'] for r in runs})} seeds) of {preset['epochs']} "
        f"epochs x {preset['batches_per_epoch']} batches = "
        f"{estimate['iterations']} iterations"
        + (f", + 1 pretraining run of {preset['pretrain']['epochs']} x "
           f"{preset['pretrain']['batches_per_epoch']} batches on "
           f"{preset['pretrain']['num_ids']} identities"
           if 'pretrained' in {r['start'] for r in runs} else '')
        + '; ' + describe_estimate(estimate))


def describe_estimate(estimate: Dict) -> str:
    """``estimated X h (train .., class graphs .., ...)`` of an estimate
    (:func:`estimate_scale_seconds` and the multisource study's)."""
    parts = [('train', 'train'), ('graphs', 'class graphs'),
             ('validation', 'validation'), ('data', 'data generation'),
             ('overhead', "runs' fixed cost")]
    return (f"estimated {estimate['total'] / 3600:.1f} h ("
            + ', '.join(f'{label} {estimate[key] / 60:.0f} min'
                        for key, label in parts if key in estimate)
            + '; an estimate from measured unit costs, see SCALE_COSTS)')


def run_scale_study(config: Optional[str],
                    work_dir: str,
                    quick: bool = False,
                    seeds: Optional[Sequence[int]] = None,
                    variants: Optional[Sequence[str]] = None,
                    counts: Optional[Sequence[int]] = None,
                    starts: Optional[Sequence[str]] = None,
                    epochs: Optional[int] = None,
                    batches_per_epoch: Optional[int] = None,
                    options: Optional[Dict] = None,
                    progress: bool = True,
                    dry_run: bool = False,
                    costs: Optional[Dict] = None,
                    preset_overrides: Optional[Dict] = None,
                    preset: Optional[str] = None,
                    records: Optional[str] = None,
                    commit: bool = False,
                    study: str = 'scale') -> Dict:
    """Train the scale study (GS against PK as the identities grow) and
    write its results.

    Runs live in ``<work_dir>/<preset>/<start>/n<count>/<variant>/seed<k>/``
    (the pretraining in ``<work_dir>/pretrain_n<N>_seed<S>_<E>x<B>/``,
    shared by the presets that pretrain alike); a run with a ``done.json``
    or a record in ``records`` is skipped, an unfinished one resumes from
    its last checkpoint. Every finished run is appended to ``records``.
    Then ``results.json`` / ``results.csv`` / ``summary.md`` and
    ``scale.png`` of the runs in the work dir.

    Args:
        config (str, optional): Base training config (a SyntheticReID
            training set, a GraphSampler; default: the study config's,
            ``configs/qaconv_gs_demo.py``).
        work_dir (str): Study folder.
        quick (bool): The quick preset. Defaults to False.
        seeds, variants, counts, starts (Sequence, optional): Override the
            preset (see :func:`plan_scale_runs`).
        epochs (int, optional): Override the preset's epochs (later lr
            steps dropped).
        batches_per_epoch (int, optional): Override the preset's epoch
            length.
        options (dict, optional): ``--cfg-options`` for every run.
        progress (bool): A progress bar over the runs.
        dry_run (bool): Only log the plan and its estimated time.
        costs (dict, optional): Unit costs of the estimate (see
            :data:`SCALE_COSTS`).
        preset_overrides (dict, optional): Other preset values (e.g.
            ``num_candidates``, ``candidates_from``); a ``pretrain`` dict
            updates the preset's.
        preset (str, optional): A preset by name (wins over ``quick``).
        records (str, optional): The study's ``runs.jsonl`` (None: no
            records).
        commit (bool): Commit ``records`` after every appended run.
        study (str): The study config. Defaults to ``'scale'``.

    Returns:
        dict: The ``results.json`` content (with ``dry_run``: ``plan`` and
        ``estimate`` only).
    """
    spec = load_study(study)
    runs, preset = plan_scale_runs(quick, seeds, variants, counts, starts,
                                   preset=preset, study=study)
    if epochs is not None:
        preset['epochs'] = int(epochs)
        preset['milestones'] = tuple(m for m in preset['milestones']
                                     if m < int(epochs))
    if batches_per_epoch is not None:
        preset['batches_per_epoch'] = int(batches_per_epoch)
    for key, value in (preset_overrides or {}).items():
        if key not in preset:
            raise ValueError(f'sampler study scale: unknown preset key '
                             f'{key!r}; expected one of {sorted(preset)}')
        if key == 'pretrain':
            preset['pretrain'] = dict(preset['pretrain'], **value)
        else:
            preset[key] = value
    base = load_config(config or config_path(spec), options)
    register_all_modules(init_default_scope=True)
    estimate = estimate_scale_seconds(base, runs, preset, costs)
    print_log(f"sampler study {study} ({preset['name']}): "
              + _describe_plan(runs, preset, estimate) + f' -> {work_dir}',
              logger='current')
    for run in runs:
        run.update(scale_run_key(run, preset, study))
    if dry_run:
        return dict(study=study, plan=runs, preset=preset,
                    estimate=estimate)
    os.makedirs(work_dir, exist_ok=True)
    todo = [r for r in runs if not is_recorded(records, r)]
    pretrained = None
    if any(r['start'] == 'pretrained' for r in todo):
        pretrained = _pretrain(base, preset, work_dir)
    share_from = max([warmup_epochs(r['spec']) for r in runs] or [0])
    bar = ProgressBar(len(runs)) if progress else None
    for run in runs:
        run_dir = scale_run_dir(work_dir, run, preset)
        done = osp.join(run_dir, 'done.json')
        if not osp.isfile(done) and not is_recorded(records, run):
            cfg = scale_run_config(base, run, preset, pretrained)
            _train_scale_run(
                cfg, run_dir, run['seed'],
                f"{study}_{preset['name']}_"
                f"{run['name'].replace('/', '_')}_seed{run['seed']}",
                dict(variant=run['variant'], start=run['start'],
                     num_ids=run['num_ids'], seed=run['seed'],
                     epochs=preset['epochs'],
                     batches_per_epoch=preset['batches_per_epoch']))
        if osp.isfile(done):
            record_run(records, run_dir, run, preset['batches_per_epoch'],
                       preset['epochs'], warmup_epochs(run['spec']),
                       share_from_epoch=share_from, commit=commit,
                       preset=preset['name'],
                       milestones=list(preset['milestones']),
                       two_stage_graph=_two_stage(run, preset),
                       **({'candidate_fn': preset.get('candidate_fn') or 'gap'}
                          if _two_stage(run, preset) else {}),
                       **({'max_train_seconds': int(
                           preset['max_train_seconds'])}
                          if preset.get('max_train_seconds') else {}))
        if bar is not None:
            bar.update()
    results = collect_scale_results(work_dir, runs, preset)
    if results['runs']:
        write_scale_results(results, work_dir)
        plot_scale_results(results, osp.join(work_dir, 'scale.png'))
    return results


def _two_stage(run: Dict, preset: Dict) -> bool:
    cand, start = preset.get('num_candidates'), preset.get('candidates_from')
    return bool(cand is not None and start is not None
                and run['num_ids'] >= start
                and run['spec'].get('sampler') in GRAPH_SAMPLERS)


def scale_run_key(run: Dict, preset: Dict, study: str = 'scale') -> Dict:
    """The record key fields of a planned scale run (study, iterations,
    warm-up iterations; the run's own fields are kept)."""
    bpe = int(preset['batches_per_epoch'])
    key = dict(study=study, variant=run['variant'], start=run['start'],
               num_ids=int(run['num_ids']), seed=int(run['seed']),
               iterations=int(preset['epochs']) * bpe,
               warmup_iterations=warmup_epochs(run['spec']) * bpe)
    if preset.get('max_train_seconds'):
        key['max_train_seconds'] = int(preset['max_train_seconds'])
    return key


def scale_run_dir(work_dir: str, run: Dict, preset: Dict) -> str:
    """``<work_dir>/<preset>/<start>/n<count>/<variant>/seed<k>``."""
    return osp.join(work_dir, preset.get('name', 'full'), run['name'],
                    f"seed{run['seed']}")


def pretrain_dir(work_dir: str, preset: Dict) -> str:
    """Where the pretraining of a preset lives:
    ``<work_dir>/pretrain_n<N>_seed<S>_<E>x<B>`` (presets that pretrain
    alike share it)."""
    pre = preset['pretrain']
    return osp.join(work_dir, f"pretrain_n{pre['num_ids']}_seed{pre['seed']}"
                    f"_{pre['epochs']}x{pre['batches_per_epoch']}")


def _pretrain(base: Config, preset: Dict, work_dir: str) -> str:
    """Train (or reuse) the network of the pretrained start.

    Returns:
        str: Its checkpoint (the last epoch's).
    """
    pre = preset['pretrain']
    run_dir = pretrain_dir(work_dir, preset)
    done = osp.join(run_dir, 'done.json')
    if not osp.isfile(done):
        cfg = pretrain_config(base, preset)
        _train_scale_run(cfg, run_dir, pre['seed'], 'scale_pretrain',
                         dict(variant='pretrain', start='pretrain',
                              num_ids=pre['num_ids'], seed=pre['seed'],
                              epochs=pre['epochs'],
                              batches_per_epoch=pre['batches_per_epoch']))
    ckpt = osp.join(run_dir, f"epoch_{pre['epochs']}.pth")
    if not osp.isfile(ckpt):
        raise FileNotFoundError(
            f'sampler study scale: the pretraining in {run_dir} is marked '
            f'done but has no {osp.basename(ckpt)}; remove {done} to train '
            'it again')
    return ckpt


def collect_scale_results(work_dir: str, runs: List[Dict],
                          preset: Dict) -> Dict:
    """Gather the metrics of the finished scale runs (and the pretraining).

    Returns:
        dict: ``study`` ('scale'), ``rows`` (variant, start, num_ids, seed,
        epoch, set, metric, value: the validation metrics of the last
        epoch, the training loss, ``train/batch_lookalike_share`` and the
        ``graph/*`` values of every epoch), ``runs`` (variant, start,
        num_ids, seed, seconds, converged) and ``preset``.
    """
    rows, info = [], []
    pre = preset['pretrain']
    todo = [dict(name='pretrain', variant='pretrain', start='pretrain',
                 num_ids=pre['num_ids'], seed=pre['seed'])] + list(runs)
    for run in todo:
        if run['variant'] == 'pretrain':
            run_dir = pretrain_dir(work_dir, preset)
        else:
            run_dir = scale_run_dir(work_dir, run, preset)
        meta = finished_run(run_dir)
        if meta is None:
            continue
        metrics = run_metrics(run_dir)
        key = dict(variant=run['variant'], start=run['start'],
                   num_ids=run['num_ids'], seed=run['seed'])
        rows += [dict(key, **r) for r in metrics]
        info.append(dict(key, seconds=meta.get('seconds'),
                         converged=converged(metrics)))
    return dict(study='scale', rows=rows, runs=info, preset={
        k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()})


def write_scale_results(results: Dict, work_dir: str) -> None:
    """Write ``results.json``, ``results.csv`` and ``summary.md`` of the
    scale study."""
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    with open(osp.join(work_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(
            f, fieldnames=['variant', 'start', 'num_ids', 'seed', 'epoch',
                           'set', 'metric', 'value'])
        writer.writeheader()
        writer.writerows(results['rows'])
    with open(osp.join(work_dir, 'summary.md'), 'w') as f:
        f.write(scale_summary_table(results))


def _test_sets(results: Dict) -> List[str]:
    return sorted({r['set'] for r in results['rows']
                   if r['metric'] in ('Rank-1', 'mAP')
                   and r['set'] not in ('train', 'graph')})


def _scale_points(results: Dict):
    """``(num_ids, start, variant) -> {(set, metric): {seed: value}}``:
    the last epoch's validation metrics, the run's mean
    ``batch_lookalike_share`` over its epochs (and of random PK batches),
    the mean graph build time."""
    last = {}
    for r in results['rows']:
        k = (r['num_ids'], r['start'], r['variant'], r['seed'])
        last[k] = max(last.get(k, 0), int(r['epoch']))
    per_epoch = defaultdict(list)
    out = defaultdict(lambda: defaultdict(dict))
    warmup = _scale_warmup(results)
    for r in results['rows']:
        k = (r['num_ids'], r['start'], r['variant'], r['seed'])
        point = k[:3]
        if r['metric'] in ('Rank-1', 'mAP') and r['set'] not in (
                'train', 'graph'):
            if int(r['epoch']) == last[k]:
                out[point][(r['set'], r['metric'])][r['seed']] = r['value']
        elif (r['set'], r['metric']) in (
                ('train', 'batch_lookalike_share'),
                ('train', 'batch_lookalike_share_random'),
                ('graph', 'build_seconds'), ('graph', 'family_share')):
            per_epoch[(point, r['set'], r['metric'], r['seed'])].append(
                r['value'])
            if r['metric'] == 'batch_lookalike_share' and \
                    point[1] != 'pretrain' and int(r['epoch']) > warmup:
                # the GS epochs (PK: the same epochs)
                per_epoch[(point, 'train', 'batch_lookalike_share_gs',
                           r['seed'])].append(r['value'])
    for (point, s, m, seed), values in per_epoch.items():
        out[point][(s, m)][seed] = float(np.mean(values))
    return out


def _scale_warmup(results: Dict, study: str = 'scale') -> int:
    """PK warm-up epochs of the Graph Sampler variants among the results'
    runs (PK runs' share is averaged over the same epochs)."""
    variants = load_study(study)['variants']
    present = {r['variant'] for r in results['rows']}
    return study_warmup({k: v for k, v in variants.items() if k in present})


def _mean_spread(values, scale=100., digits=1) -> str:
    vals = np.asarray(list(values), dtype=float) * scale
    if not vals.size:
        return '-'
    return f'{vals.mean():.{digits}f} ± {vals.std():.{digits}f}'


def scale_summary_table(results: Dict) -> str:
    """Markdown table of the scale study: identities | start | sampler |
    batch_lookalike_share | Rank-1 / mAP of every test set (mean ± std
    over seeds, %) | seeds | train time (min per run) | graph build (s)."""
    points = _scale_points(results)
    sets = _test_sets(results)
    head = (['identities', 'start', 'sampler',
             'batch_lookalike_share GS epochs (all epochs)']
            + [f'{s} Rank-1 / mAP' for s in sets]
            + ['seeds', 'train min/run', 'graph s/build'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    secs = defaultdict(list)
    for r in results['runs']:
        if r.get('seconds'):
            secs[(r['num_ids'], r['start'], r['variant'])].append(
                r['seconds'])
    order = {'pretrain': 0, 'scratch': 1, 'pretrained': 2}
    samplers = {v: i for i, v in enumerate(load_study('scale')['variants'])}
    for point in sorted(points, key=lambda p: (p[1] != 'pretrain', p[0],
                                               order.get(p[1], 9),
                                               samplers.get(p[2], 9), p[2])):
        vals = points[point]
        share = vals.get(('train', 'batch_lookalike_share'), {})
        share_gs = vals.get(('train', 'batch_lookalike_share_gs'), {})
        rand = vals.get(('train', 'batch_lookalike_share_random'), {})
        if share_gs:
            cell = (_mean_spread(share_gs.values(), 1., 3) +
                    f' ({np.mean(list(share.values())):.3f})')
        else:
            cell = _mean_spread(share.values(), 1., 3)
        if rand:
            cell += f'; random {np.mean(list(rand.values())):.3f}'
        if point[1] == 'pretrain':  # the network of the pretrained start
            seed = results.get('preset', {}).get('pretrain', {}).get('seed')
            cells = [str(point[0]), f'pretraining (seed {seed}: other '
                     'people)', 'pk', cell]
        else:
            cells = [str(point[0]), point[1], point[2], cell]
        for s in sets:
            cells.append(
                _mean_spread(vals.get((s, 'Rank-1'), {}).values()) + ' / '
                + _mean_spread(vals.get((s, 'mAP'), {}).values()))
        seeds = {seed for v in vals.values() for seed in v}
        cells.append(str(len(seeds)))
        t = secs.get(point)
        cells.append(f'{np.mean(t) / 60:.1f}' if t else '-')
        graph = vals.get(('graph', 'build_seconds'), {})
        cells.append(f'{np.mean(list(graph.values())):.1f}' if graph else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_scale_results(results: Dict, path: str,
                       caption: Optional[str] = None) -> None:
    """Rank-1 and mAP of every test set against the number of training
    identities (one line per sampler and start: mean over seeds, band =
    min-max), and a panel of ``batch_lookalike_share`` over the GS epochs
    (PK runs: the same epochs; the random PK expectation dotted).

    Args:
        results (dict): From :func:`collect_scale_results`.
        path (str): Output PNG.
        caption (str, optional): A line under the figure (e.g. the cost
            benchmark's figures).
    """
    points = _scale_points(results)
    study = {p: v for p, v in points.items() if p[1] != 'pretrain'}
    if not study:
        raise ValueError('sampler study scale: no finished run to plot')
    sets = _test_sets(results)
    keys = [(s, m) for s in sets for m in ('Rank-1', 'mAP')]
    keys.append(('train', 'batch_lookalike_share_gs'))
    cols = 2
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows),
                             squeeze=False)
    variants = sorted({p[2] for p in study})
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    colors = {v: cycle[i % len(cycle)] for i, v in enumerate(variants)}
    styles = {'scratch': '-', 'pretrained': '--'}
    markers = {'scratch': 'o', 'pretrained': 's'}
    lines = sorted({(p[1], p[2]) for p in study})
    for ax, key in zip(axes.flat, keys):
        for start, variant in lines:
            xs, mean, lo, hi, n = [], [], [], [], 0
            for p in sorted(q for q in study if q[1:] == (start, variant)):
                vals = list(study[p].get(key, {}).values())
                if not vals:
                    continue
                xs.append(p[0])
                mean.append(np.mean(vals))
                lo.append(np.min(vals))
                hi.append(np.max(vals))
                n = max(n, len(vals))
            if not xs:
                continue
            # the start differs by line and marker (one identity count draws
            # no line: the marker tells the starts apart)
            ax.plot(xs, mean, styles.get(start, ':'),
                    marker=markers.get(start, 'x'), ms=5,
                    mfc='none' if start == 'pretrained' else colors[variant],
                    color=colors[variant], label=f'{variant}, {start} (n={n})')
            ax.fill_between(xs, lo, hi, alpha=0.15, color=colors[variant])
        if key == ('train', 'batch_lookalike_share_gs'):
            rand = defaultdict(list)
            for p, v in study.items():
                rand[p[0]] += list(v.get(('train',
                                          'batch_lookalike_share_random'),
                                         {}).values())
            xs = sorted(x for x in rand if rand[x])
            if xs:
                ax.plot(xs, [np.mean(rand[x]) for x in xs], ':', marker='x',
                        ms=4, color='grey', label='random PK (expected)')
            ax.set_title('batch_lookalike_share (mean over the GS epochs; '
                         'PK: the same epochs)')
        else:
            ax.set_title(f'{key[0]} {key[1]} (last epoch)')
        ax.set_xscale('log')
        counts = sorted({p[0] for p in study})
        ax.set_xticks(counts)
        ax.set_xticklabels([str(c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel('training identities')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.suptitle('scale: GS vs PK at an equal number of iterations; mean '
                 'over seeds, band = min-max')
    if caption:
        fig.text(0.5, 0.005, caption, ha='center', va='bottom', fontsize=8,
                 wrap=True)
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


