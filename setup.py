"""Installs fastervit_dense: FasterViT and FastViT backbones for mmdetection 3.x and mmsegmentation 1.x."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(osp.abspath(__file__)), 'fastervit_dense', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


# The versions verified to work together (see the README): mmdet 3.3.0 and mmseg 1.2.2 accept only
# mmcv < 2.2.0, and torchvision 0.28.0 pairs with torch 2.13.0.
INSTALL_REQUIRES = [
    'torch==2.13.0',
    'torchvision==0.28.0',
    'mmengine==0.10.7',
    'mmcv==2.1.0',
    'mmdet==3.3.0',
    'mmsegmentation==1.2.2',
    'timm==1.0.31',
    # mmseg imports these without declaring them.
    'ftfy',
    'regex',
    # mmcv's setup and mmengine's `mmdet::` config bases import pkg_resources (gone in setuptools 82).
    'setuptools<82',
    'pycocotools',
]

TESTS_REQUIRE = [
    'pytest',
    'hypothesis',
    'onnx',
    'onnxruntime',
    # The official FasterViT package: a reference implementation that tests compare against only.
    'fastervit==1.0.0',
]

setup(
    name='fastervit_dense',
    version=read_version(),
    description='FasterViT and FastViT backbones for OpenMMLab detection and segmentation',
    long_description=open(osp.join(osp.dirname(osp.abspath(__file__)), 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['fastervit_dense', 'fastervit_dense.*']),
    python_requires='>=3.10,<3.13',
    install_requires=INSTALL_REQUIRES,
    extras_require={'tests': TESTS_REQUIRE},
    license='Apache-2.0',
)
