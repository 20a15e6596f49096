"""Installs fastervit_dense: FasterViT and FastViT backbones for dense prediction, with an
OpenMMLab layer for mmdetection 3.x and mmsegmentation 1.x.

    pip install -e .                  # the core: torch, torchvision, timm (from a checkout)
    pip install -e '.[mm]'            # + mmengine, mmcv, mmdet, mmseg (ranges they accept)
    pip install -e '.[smp]'           # + segmentation_models_pytorch ('tu-fastervit_dense_2')
    pip install -e '.[transformers]'  # + Hugging Face transformers (TimmBackbone)

Requirements are ranges, so the kit installs into an environment that already has torch (and
mmcv). The exact set verified together lives in requirements/lock.txt; tools/setup_env.sh
installs it for `make test` and `make demo`.
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    namespace = {}
    with open(osp.join(HERE, 'fastervit_dense', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


# torch 2.4 added torch.serialization.add_safe_globals (safe reading of published checkpoints);
# timm 1.0.20 is the first with every FastViT variant the kit offers (MobileCLIP mci3/mci4).
CORE_REQUIRES = [
    'torch>=2.4',
    'torchvision>=0.19',
    'timm>=1.0.20',
    'safetensors',
    # hf-hub: checkpoint ids; 0.35 is the oldest the core's tests ran with (make test-core-lowest).
    'huggingface_hub>=0.35',
    'filelock',  # one download per machine (torch requires it too)
    'tqdm',  # download progress (huggingface_hub requires it too)
]

# As mmdet 3.x and mmseg 1.x declare them: both accept mmcv >= 2.0.0rc4, < 2.2.0.
MM_REQUIRES = [
    'mmengine>=0.7.1,<1.0.0',
    'mmcv>=2.0.0rc4,<2.2.0',
    'mmdet>=3.0.0,<4.0.0',
    'mmsegmentation>=1.0.0,<2.0.0',
    # mmseg imports these without declaring them.
    'ftfy',
    'regex',
    # mmengine's `mmdet::` config bases (and mmcv's setup) import pkg_resources, gone in setuptools 82.
    'setuptools<82',
    'pycocotools',
    # The demo's generated data (fastervit_dense.mm.synthetic); mmcv requires both as well.
    'numpy',
    'opencv-python',
]

# Libraries that take FasterViT as a timm model (``tu-fastervit_dense_*`` encoders, TimmBackbone);
# the kit needs neither. Lower bounds: the versions the recipes' tests ran with.
SMP_REQUIRE = ['segmentation-models-pytorch>=0.6,<1']
TRANSFORMERS_REQUIRE = ['transformers>=5,<6']

# ONNX export checks and runs (tools/deployment/export_onnx.py --verify, test_onnx.py,
# benchmark_onnx.py) on two CPU runtimes; OpenVINO: the version the tests ran with.
DEPLOY_REQUIRE = ['onnx', 'onnxruntime', 'openvino>=2026.4', 'numpy']

TESTS_REQUIRE = [
    'pytest',
    'hypothesis',
    *DEPLOY_REQUIRE,
    # The official FasterViT package: a reference implementation that tests compare against only.
    'fastervit==1.0.0',
]

setup(
    name='fastervit_dense',
    version=read_version(),
    description='FasterViT and FastViT backbones for dense prediction, with an OpenMMLab layer',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    # fastervit_dense.testing (reference models, loopback servers) serves the tests only.
    packages=find_packages(include=['fastervit_dense', 'fastervit_dense.*'],
                           exclude=['fastervit_dense.testing']),
    python_requires='>=3.10,<3.13',
    install_requires=CORE_REQUIRES,
    extras_require={'mm': MM_REQUIRES, 'deploy': DEPLOY_REQUIRE, 'tests': TESTS_REQUIRE,
                    'smp': SMP_REQUIRE, 'transformers': TRANSFORMERS_REQUIRE},
    license='Apache-2.0',
)
