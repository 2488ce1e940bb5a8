"""Installation of mmreid_gs."""
import os.path as osp

from setuptools import find_packages, setup


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join('mmreid_gs', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """Read a requirements file, following ``-r`` includes."""
    reqs = []
    folder = osp.dirname(fname)
    with open(fname, encoding='utf-8') as f:
        for line in f:
            line = line.split('#')[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(osp.join(folder, line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


setup(
    name='mmreid_gs',
    version=get_version(),
    description='QAConv + Graph Sampler generalizable person '
    're-identification for MMEngine',
    long_description=readme(),
    long_description_content_type='text/markdown',
    keywords='person re-identification, QAConv, graph sampler, mmengine',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    include_package_data=True,
    python_requires='>=3.8',
    license='Apache License 2.0',
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={'tests': parse_requirements('requirements/tests.txt')},
    zip_safe=False)
