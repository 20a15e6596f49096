"""The OpenMMLab layer: the kit's backbones in mmdetection's and mmsegmentation's registries.

Importing this module (configs: ``custom_imports=dict(imports=['fastervit_dense.mm'],
allow_failed_imports=False)``)

* registers :class:`~fastervit_dense.FasterViT` and :class:`~fastervit_dense.FastViT` in the MODELS
  registry of mmdet and of mmseg (whichever is installed), as ``type='FasterViT'`` / ``'FastViT'``;
* registers :class:`~.dino_head.SharedDecoderDINOHead` in mmdet's MODELS (DINO's heads shared by
  the decoder layers, as NVlabs trained FasterViT's DINO detectors) and
  :class:`~.det_visualizer.LegibleDetVisualizer` in its VISUALIZERS (labels kept apart);
* registers :class:`~.dataset_check.DatasetCheckHook` (datasets checked against the config),
  :class:`~.visualization.DrawPredictionsHook` (drawings that keep the images' subfolders),
  :class:`~.engine.RNGStateHook` (exact resume) and
  :class:`~.engine.NoDecayOptimWrapperConstructor` in mmengine's registries;
* makes mmengine's training checkpoints loadable with ``weights_only=True`` (:mod:`.checkpoint`);
* sends the core's log lines (the loading report) to mmengine's current logger.

The backbones are the core's classes themselves, so weights, state-dict keys and behaviour are the
same inside and outside OpenMMLab.
"""
import importlib
import importlib.util
import logging

from ..models import BACKBONES
from . import dataset_check  # noqa: F401  (registers DatasetCheckHook)
from . import engine  # noqa: F401  (registers RNGStateHook, NoDecayOptimWrapperConstructor)
from . import visualization  # noqa: F401  (registers DrawPredictionsHook)
from .checkpoint import install_safe_checkpoint_support

__all__ = ['registries', 'register_backbones']

_FRAMEWORKS = ('mmdet', 'mmseg')


def registries() -> list:
    """The MODELS registries of the installed frameworks (mmdet, mmseg)."""
    found = []
    for name in _FRAMEWORKS:
        try:
            found.append(importlib.import_module(f'{name}.registry').MODELS)
        except ImportError:
            continue
    if not found:
        raise ImportError('fastervit_dense.mm needs mmdet 3.x or mmsegmentation 1.x: install the '
                          "kit's OpenMMLab extra (pip install 'fastervit_dense[mm]')")
    return found


def register_backbones(*classes):
    for registry in registries():
        for cls in classes or BACKBONES.values():
            if registry.module_dict.get(cls.__name__) is not cls:
                registry.register_module(module=cls, force=True)


class _MMEngineLogHandler(logging.Handler):
    """Forwards the core's log records to mmengine's current logger (its console and log file)."""

    def emit(self, record):
        from mmengine.logging import print_log
        print_log(self.format(record), logger='current', level=record.levelno)


def _forward_core_logs():
    core = logging.getLogger('fastervit_dense')
    if not any(isinstance(h, _MMEngineLogHandler) for h in core.handlers):
        core.addHandler(_MMEngineLogHandler())
        core.setLevel(logging.INFO)
        core.propagate = False


register_backbones()
if importlib.util.find_spec('mmdet') is not None:
    from . import det_visualizer  # noqa: F401  (registers LegibleDetVisualizer in mmdet)
    from . import dino_head  # noqa: F401  (registers SharedDecoderDINOHead in mmdet)
install_safe_checkpoint_support()
_forward_core_logs()
