"""fastervit_dense: FasterViT and FastViT backbones for dense prediction, at any input size.

The core (this package, ``models``, ``checkpoint``, ``converters``, ``hub``, ``utils``) needs only
torch, torchvision and timm::

    from fastervit_dense import FasterViT
    backbone = FasterViT('2')
    backbone.load_pretrained('https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
                             'fastervit_2_224_1k.pth.tar')

The OpenMMLab layer, :mod:`fastervit_dense.mm`, registers the backbones (and the kit's hook and
optimizer constructor) in mmdetection's and mmsegmentation's registries; configs import it with
``custom_imports=dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)``. Importing this
package after mmdet or mmseg (as ``custom_imports=dict(imports=['fastervit_dense'])`` in their
tools does) loads that layer too, so configs written for earlier versions keep working.
"""
import sys

from .models import (FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FASTVIT_ARCHS, FASTVIT_WEIGHTS, FasterViT,
                     FasterViTClassifier, FastViT)
from .version import __version__

__all__ = ['FasterViT', 'FastViT', 'FasterViTClassifier', 'FASTERVIT_ARCHS', 'FASTVIT_ARCHS', 'FASTERVIT_WEIGHTS',
           'FASTVIT_WEIGHTS', '__version__']

if 'mmdet' in sys.modules or 'mmseg' in sys.modules:
    from . import mm  # noqa: F401,E402
