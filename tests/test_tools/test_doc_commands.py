"""The commands of README.md and docs/*.md work as written.

Every code block of the README and of the docs pages (fenced, and the
4-space indented ones) is read as a reader copies it:

- every repository path it names (``configs/``, ``tools/``, ``docs/``,
  ``requirements`` ...) exists;
- every ``data/synthetic_reid/...`` and ``work_dirs/...`` path it names exists
  after the quick start (or is written by a command shown before it on the
  same page). Nothing is trained: what a ``tools/train.py`` /
  ``tools/test.py`` command writes is derived from its config as the tools
  load it (work dir, epochs, checkpoint interval, graph dumps) and the
  synthetic benchmark's file names come from the generator itself (its
  images replaced by blank ones, which keeps every name and takes 2 s);
- every ``python tools/...`` command is parsed by the tool's own argument
  parser (the tool is started with ``parse_args`` stopped right after
  parsing), so a flag the tool does not take fails here;
- python blocks compile.

The README's test command is the one ``.ci/run`` runs.
"""
import argparse
import contextlib
import fnmatch
import glob
import json
import os
import os.path as osp
import re
import runpy
import shlex
import sys
from unittest import mock

import numpy as np
import pytest
from helpers import REPO

DOCS = ['README.md'] + sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md')))
QUICK_START = 'python tools/train.py configs/qaconv_gs_demo.py'
#: Paths under these are files of the repository.
REPO_DIRS = ('configs', 'tools', 'docs', 'mmreid_gs', 'tests',
             'requirements', '.ci')
PATH_RE = re.compile(
    r'(?<![\w./<>-])((?:configs|tools|docs|mmreid_gs|tests|requirements|'
    r'\.ci|work_dirs|data/synthetic_reid)(?:/[^\s\'"`),;\]]*)?|'
    r'requirements\.txt|setup\.py)')
#: Command prefixes that only change how a command runs.
WRAPPERS = {'nice': 2, 'flock': 1, 'timeout': 1, 'env': 0}


# --------------------------------------------------------------- reading
def code_blocks(doc):
    """The code blocks of a markdown file of the repository (see
    :func:`blocks_of`)."""
    with open(osp.join(REPO, doc)) as f:
        return blocks_of(f.read())


def blocks_of(markdown):
    """``[(language, first line number, text)]`` of markdown text: fenced
    blocks and 4-space indented blocks (after a blank line, outside
    lists)."""
    lines = markdown.splitlines()
    blocks, i = [], 0
    prev_blank, in_list = True, False
    while i < len(lines):
        line = lines[i]
        fence = re.match(r'^(\s*)```(\w*)', line)
        if fence:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith('```'):
                body.append(lines[i])
                i += 1
            blocks.append((fence.group(2), start + 1, '\n'.join(body)))
            i += 1
            prev_blank = False
            continue
        if prev_blank and line.startswith('    ') and not in_list:
            start, body = i, []
            while i < len(lines) and (lines[i].startswith('    ')
                                      or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            blocks.append(('', start + 1, '\n'.join(body).rstrip()))
            prev_blank = True
            continue
        if line.strip():
            in_list = bool(re.match(r'^\s*([-*]|\d+\.)\s', line)) or (
                in_list and line.startswith('  '))
        prev_blank = not line.strip()
        i += 1
    return blocks


def commands(text):
    """The shell commands of a block, as token lists: continuation lines
    joined, comments dropped, ``&&`` / ``;`` / ``|`` split, wrappers
    (``OMP_NUM_THREADS=1``, ``nice -n 19``, ``flock FILE``) removed; lines
    that are no command (program output) skipped."""
    found = []
    for line in re.sub(r'\\\n\s*', ' ', text).splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # output with an odd quote
            continue
        cmd = []
        for tok in tokens + [';']:
            if tok in ('&&', ';', '||', '|'):
                while cmd and (re.match(r'^[A-Z_]+=', cmd[0])
                               or cmd[0] in WRAPPERS):
                    if cmd[0] == 'nice' and len(cmd) > 1 and cmd[1] == '-n':
                        cmd = cmd[3:]
                    elif cmd[0] in WRAPPERS:
                        cmd = cmd[1 + WRAPPERS[cmd[0]]:]
                    else:
                        cmd = cmd[1:]
                if cmd and cmd[0] in ('python', 'python3', 'bash', 'pip',
                                      'tensorboard'):
                    found.append(cmd)
                cmd = []
            else:
                cmd.append(tok)
    return found


def concrete(tokens):
    """Tokens as typed: ``[--worst]`` -> ``--worst``, ``CKPT|none`` ->
    ``CKPT``, ``...`` dropped."""
    out = []
    for tok in tokens:
        tok = tok.strip('[]')
        if tok in ('', '...'):
            continue
        out.append(tok.split('|')[0] if '|' in tok else tok)
    return out


def named_paths(text):
    """Paths of the repository, the data and the work dirs that a block
    names (``<repo>/`` dropped, ``<placeholder>`` -> ``*``)."""
    text = text.replace('<repo>/', '')
    paths = []
    for match in PATH_RE.finditer(text):
        path = re.sub(r'<[^>]*>', '*', match.group(1)).rstrip('.:')
        if path and '*' not in path.split('/')[0]:
            paths.append(path)
    return paths


# ------------------------------------------------------------- the tools
class _Parsed(BaseException):
    """Raised right after a tool parsed its command line (not an
    ``Exception``: ``run_cli`` lets it through)."""

    def __init__(self, namespace):
        super().__init__()
        self.namespace = namespace


def parse_with_tool(script, args):
    """Start ``script`` as ``python script args`` up to its argument
    parsing; return the namespace, or raise AssertionError with argparse's
    message."""
    original = argparse.ArgumentParser.parse_args
    errors = []

    def parse_args(parser, argv=None, namespace=None):
        try:
            ns = original(parser, argv, namespace)
        except SystemExit:
            raise
        raise _Parsed(ns)

    def error(parser, message):
        errors.append(message)
        raise SystemExit(2)

    argv = sys.argv
    sys.argv = [script, *args]
    try:
        with mock.patch.object(argparse.ArgumentParser, 'parse_args',
                               parse_args), \
                mock.patch.object(argparse.ArgumentParser, 'error', error):
            runpy.run_path(osp.join(REPO, script), run_name='__main__')
    except _Parsed as parsed:
        return parsed.namespace
    except SystemExit:
        raise AssertionError(f'{script} {" ".join(args)}: '
                             f'{errors[0] if errors else "exited"}')
    finally:
        sys.argv = argv
    raise AssertionError(f'{script} never parsed its arguments')


class Products:
    """What the documented commands leave on disk: files and folders under
    ``work_dirs/`` (patterns) and the generated synthetic trees (written
    into ``root`` with blank images)."""

    def __init__(self, root):
        self.root = str(root)
        self.patterns = set()  # files and folders (fnmatch patterns)
        self.folders = set()  # folders whose content is not known
        self.trees = set()

    def add(self, path, anything_inside=False):
        path = osp.normpath(path)
        self.patterns.add(path)
        if anything_inside:
            self.folders.add(path)

    def has(self, path):
        path = osp.normpath(path)
        if path.startswith('data/synthetic_reid'):
            return bool(glob.glob(osp.join(self.root, path)))
        return any(
            fnmatch.fnmatch(path, known) or fnmatch.fnmatch(known, path)
            for known in self.patterns) or any(
                path.startswith(folder + '/') for folder in self.folders)

    def generate(self, dataset):
        """The tree of a ``SyntheticReID`` config dict, with the
        generator's names (its renderer replaced by blank images)."""
        from mmreid_gs.datasets.synthetic import writer
        args = {k: v for k, v in dataset.items()
                if k in ('domain', 'num_train_ids', 'num_test_ids',
                         'num_cams', 'imgs_per_cam', 'min_cams',
                         'family_size', 'img_size', 'seed')}
        key = (dataset['data_root'], json.dumps(args, sort_keys=True))
        if key in self.trees:
            return
        self.trees.add(key)

        def blank(attrs, scene, style, view, rng, size):
            return np.zeros((size[0], size[1], 3), np.uint8)

        with contextlib.ExitStack() as stack:
            stack.enter_context(mock.patch.object(writer, 'render_image',
                                                  blank))
            if hasattr(writer, '_BAR_MIN'):  # no progress bar
                stack.enter_context(mock.patch.object(
                    writer, '_BAR_MIN', float('inf')))
            writer.generate_synthetic_reid(
                osp.join(self.root, dataset['data_root']), **args)

    def run_config(self, config, ns, train):
        """Record what ``tools/train.py`` (``train``) or ``tools/test.py``
        with the parsed options ``ns`` writes."""
        from mmreid_gs.cli import apply_runner_args, load_config
        cfg = load_config(osp.join(REPO, config), ns.cfg_options)
        local_rank = os.environ.get('LOCAL_RANK')
        apply_runner_args(cfg, ns, config)
        if local_rank is None:
            os.environ.pop('LOCAL_RANK', None)
        work_dir = osp.normpath(cfg.work_dir)
        for dataset in _datasets(cfg):
            if dataset.get('type') == 'SyntheticReID':
                self.generate(dataset)
        for sub in ('', '*/*.log', '*/vis_data/*.json', '*/vis_data'):
            self.add(osp.join(work_dir, sub))
        if not train:
            return
        self.add(osp.join(work_dir, osp.basename(config)))
        epochs = cfg.train_cfg.max_epochs
        ckpt = cfg.get('default_hooks', {}).get('checkpoint', {})
        interval = ckpt.get('interval', 1)
        for epoch in range(1, epochs + 1):
            if epoch % interval == 0 or epoch == epochs:
                self.add(osp.join(work_dir, f'epoch_{epoch}.pth'))
        self.add(osp.join(work_dir, 'last_checkpoint'))
        for hook in cfg.get('custom_hooks', []):
            if hook.get('type') == 'GraphSamplerHook' and hook.get(
                    'save_graph'):
                self.add(osp.join(work_dir, 'graph'))
                for epoch in range(hook.get('pk_epochs', 1) + 1,
                                   epochs + 1):
                    self.add(osp.join(work_dir, 'graph',
                                      f'epoch_{epoch}.npz'))


def _datasets(cfg):
    """Every dataset dict of a config's training and test sets."""
    found = []
    train = cfg.get('train_dataloader', {}).get('dataset')
    if train:
        found += list(train.get('datasets', [train]))
    for split in (cfg.get('test_cfg') or {}).get('test_sets', {}).values():
        found += [split.get('query', {}), split.get('gallery', {})]
    return found


def run_command(cmd, products, where):
    """Check one command; record what it writes into ``products``."""
    head = cmd[0]
    if head == 'pip':
        args = cmd[2:] if len(cmd) > 1 and cmd[1] == 'install' else []
        for i, tok in enumerate(args):
            if tok == '-r':
                assert osp.isfile(osp.join(REPO, args[i + 1])), \
                    f'{where}: {args[i + 1]} not found'
        return
    if head == 'bash':
        script = cmd[1]
        assert osp.isfile(osp.join(REPO, script)), f'{where}: no {script}'
        for arg in cmd[2:]:  # the work dir of a launcher script
            if arg.startswith('work_dirs/'):
                products.add(arg, anything_inside=True)
        return
    if head == 'tensorboard' or len(cmd) < 2 or cmd[1] == '-m' or \
            cmd[1] == '-c':
        return
    script, args = cmd[1], concrete(cmd[2:])
    assert osp.isfile(osp.join(REPO, script)), f'{where}: no {script}'
    if not script.startswith('tools/'):
        return
    try:
        ns = parse_with_tool(script, args)
    except AssertionError as err:
        raise AssertionError(f'{where}: {err}') from None
    opts = vars(ns)
    config = opts.get('config')
    runner = script in ('tools/train.py', 'tools/test.py')
    for key in ('out', 'out_dir', 'work_dir', 'family_curve'):
        if isinstance(opts.get(key), str):
            # what a runner writes into its work dir is known
            products.add(opts[key], anything_inside=not (
                runner and key == 'work_dir'))
    if runner and isinstance(config, str) and osp.isfile(
            osp.join(REPO, config)):
        products.run_config(config, ns, script == 'tools/train.py')
    if script == 'tools/analysis_tools/readme_figures.py':
        readme_figure_runs(ns, products)


def readme_figure_runs(ns, products):
    """The runs ``readme_figures.py`` makes, from its own plan (its
    ``run_tool`` recorded instead of run)."""
    from helpers import load_tool
    tool = load_tool('tools/analysis_tools/readme_figures.py')
    planned = []

    def plan(name, kind, args, work_dir, fresh, note=None):
        planned.append((kind, args, osp.relpath(work_dir, REPO)))
        return dict(wall_s=0., metrics={})

    with mock.patch.object(tool, 'run_tool', plan):
        tool.measure(ns)
    for kind, args, work_dir in planned:
        script = f'tools/{kind}.py'
        sub = parse_with_tool(script, [*args, '--work-dir', work_dir])
        products.run_config(sub.config, sub, kind == 'train')


# ----------------------------------------------------------------- tests
@pytest.fixture(scope='module')
def after_quick_start(tmp_path_factory):
    """What the README's quick start (and the figure tool the README
    names) leave behind."""
    products = Products(tmp_path_factory.mktemp('docs'))
    run_command(shlex.split(QUICK_START), products, 'quick start')
    run_command(shlex.split(
        'python tools/analysis_tools/readme_figures.py'), products,
        'readme_figures')
    return products


def test_readme_quick_start_is_two_commands_and_ci_runs_the_tests():
    readme = open(osp.join(REPO, 'README.md')).read()
    quick = readme.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    cmds = [c for _, _, text in [b for b in code_blocks('README.md')
                                 if b[2] in quick]
            for c in commands(text)]
    lines = [' '.join(c) for c in cmds]
    install = 'pip install -r requirements.txt && pip install -e .'
    assert f'{install} && {QUICK_START}' in quick
    assert f'{install} && python -m pytest' in quick
    assert lines[:6] == ['pip install -r requirements.txt',
                         'pip install -e .', QUICK_START,
                         'pip install -r requirements.txt',
                         'pip install -e .', 'python -m pytest']
    ci = open(osp.join(REPO, '.ci', 'run')).read()
    assert re.search(r'^python -m pytest$', ci, re.M)


def test_blocks_are_read():
    """The reader finds the blocks and commands it checks (a hand count on
    a small page)."""
    text = ('Intro\n\n    python tools/test.py configs/a.py CKPT \\\n'
            '        --rerank   # comment\n    OMP_NUM_THREADS=1 nice -n 19 '
            'python tools/x.py [--quick]\n\n- item\n    not code\n\n'
            '```python\nx = "work_dirs/a/epoch_1.pth"\n```\n')
    blocks = blocks_of(text)
    assert [(lang, line) for lang, line, _ in blocks] == [('', 3),
                                                          ('python', 11)]
    assert commands(blocks[0][2]) == [
        ['python', 'tools/test.py', 'configs/a.py', 'CKPT', '--rerank'],
        ['python', 'tools/x.py', '[--quick]']]
    assert concrete(['CKPT|none', '[--quick]', '...']) == ['CKPT',
                                                          '--quick']
    assert named_paths(blocks[1][2]) == ['work_dirs/a/epoch_1.pth']
    assert named_paths('<repo>/work_dirs/x/<timestamp>/a.log; '
                       'mmreid_gs/tools/y') == ['work_dirs/x/*/a.log',
                                                'mmreid_gs/tools/y']


@pytest.mark.parametrize('doc', DOCS)
def test_doc_commands_paths_and_flags(doc, after_quick_start):
    products = Products(after_quick_start.root)
    products.patterns = set(after_quick_start.patterns)
    products.folders = set(after_quick_start.folders)
    products.trees = after_quick_start.trees
    missing = []
    for lang, line, text in code_blocks(doc):
        where = f'{doc}:{line}'
        if lang == 'python':
            compile(text, where, 'exec')
        else:
            for cmd in commands(text):
                run_command(cmd, products, where)
        for path in named_paths(text):
            top = path.split('/')[0]
            if top in REPO_DIRS or path in ('requirements.txt', 'setup.py'):
                ok = bool(glob.glob(osp.join(REPO, path)))
            else:
                ok = products.has(path)
            if not ok:
                missing.append(f'{where}: {path}')
    assert not missing, 'named but not there after the quick start:\n' + \
        '\n'.join(missing)


def test_work_dir_paths_are_checked(after_quick_start):
    """The check fails on the README's old paths: another work dir, another
    image name, an epoch the demo does not reach."""
    has = after_quick_start.has
    assert has('work_dirs/qaconv_gs_demo/epoch_8.pth')
    assert has('work_dirs/qaconv_gs_demo/graph/epoch_2.npz')
    assert not has('work_dirs/qaconv_gs_demo/graph/epoch_1.npz')  # PK epoch
    assert has('work_dirs/qaconv_gs_demo/*/vis_data/scalars.json')
    assert not has('work_dirs/gs/epoch_8.pth')
    assert not has('work_dirs/qaconv_gs_demo/epoch_9.pth')
    assert has('data/synthetic_reid/A/query/0002_c2s1_003965_00.jpg')
    assert not has('data/synthetic_reid/A/query/0201_c2s1_003965_00.jpg')
    assert has('work_dirs/readme_figures/gs_seed0/epoch_8.pth')
    with pytest.raises(AssertionError, match='unrecognized arguments: '
                       '--no-such-flag'):
        run_command(['python', 'tools/test.py', 'configs/qaconv_gs_demo.py',
                     '--no-such-flag'], after_quick_start, 'x')


# slow (about 18-30 s): a benchmark-marked run (`pytest -m benchmark`)
# keeps the CPU suite under its 10-minute limit
@pytest.mark.benchmark
def test_demo_graph_dumps_only_write_files(make_tiny_config, tmp_path):
    """``save_graph=True`` (the demo's, for vis_graph.py) leaves the
    training as it is: the same checkpoint, bit for bit, with and without
    it; only the dumps differ."""
    import torch
    from helpers import checkpoint_state, load_tool
    train = load_tool('tools/train.py')
    states = {}
    for save in (False, True):
        config = make_tiny_config(tmp_path, name=f'tiny_{save}.py',
                                  train_ids=8, test_sets=dict(a='a'),
                                  graph_hook=dict(save_graph=save))
        work_dir = str(tmp_path / f'run_{save}')
        assert train.run_cli(train.main, [config, '--work-dir', work_dir,
                                          '--no-validate']) == 0
        states[save] = checkpoint_state(osp.join(work_dir, 'epoch_2.pth'))
        dumps = sorted(os.listdir(osp.join(work_dir, 'graph'))) \
            if osp.isdir(osp.join(work_dir, 'graph')) else []
        assert dumps == (['epoch_2.npz'] if save else [])
    assert states[True].keys() == states[False].keys()
    for key in states[True]:
        torch.testing.assert_close(states[True][key], states[False][key],
                                   rtol=0, atol=0, msg=key)
    # the README's vis_graph.py command draws from those dumps
    vis = load_tool('tools/visualization/vis_graph.py')
    out = str(tmp_path / 'neighbors.png')
    curve = str(tmp_path / 'family_share.png')
    assert vis.run_cli(vis.main, [
        str(tmp_path / 'run_True'), '--epochs', '2', '--classes', '2',
        '--out', out, '--family-curve', curve]) == 0
    assert os.path.getsize(out) > 0 and os.path.getsize(curve) > 0


@pytest.mark.parametrize('doc', DOCS)
def test_relative_links_resolve(doc):
    """Every relative link of a page names a file of the repository (the
    README links its reference pages in docs/)."""
    with open(osp.join(REPO, doc)) as f:
        text = f.read()
    targets = [m.group(1) for m in re.finditer(r'\]\(([^)#\s]+)[^)]*\)', text)
               if not m.group(1).startswith(('http://', 'https://'))]
    missing = [t for t in targets
               if not osp.exists(osp.join(REPO, osp.dirname(doc), t))]
    assert not missing, f'{doc}: {missing}'
    if doc == 'README.md':
        for page in ('get_started', 'training', 'testing', 'datasets',
                     'inference', 'results'):
            assert f'docs/{page}.md' in targets, page
