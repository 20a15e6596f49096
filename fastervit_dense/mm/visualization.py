"""Drawn test predictions that keep the images' own subfolders and names.

mmdet's ``DetVisualizationHook`` saves each drawing under the image's base name (``a/img.jpg`` and
``b/img.jpg`` overwrite each other) and mmseg's names them ``test_<name>_<step>.png`` under
``vis_data/vis_image``. :class:`DrawPredictionsHook` writes the drawing of ``<image folder>/a/img.jpg``
to ``<out_dir>/a/img.jpg`` for either framework (the image's path relative to the dataset's image
folder, ``data_prefix['img']`` or ``data_prefix['img_path']``), with the visualizer of the config
and the dataset's class colours. The kit's ``tools/test.py --show-dir DIR`` uses it.
"""
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['DrawPredictionsHook', 'relative_image_path']


def relative_image_path(img_path: str, image_root: Optional[str]) -> str:
    """``img_path`` relative to ``image_root`` when it lies inside it, else its base name."""
    if image_root:
        relative = osp.relpath(osp.abspath(img_path), osp.abspath(image_root))
        if not relative.startswith(osp.pardir + osp.sep) and relative != osp.pardir:
            return relative
    return osp.basename(img_path)


@HOOKS.register_module()
class DrawPredictionsHook(Hook):
    """Draws ground truth beside prediction for every test image into ``out_dir`` (relative to the
    run's work dir unless absolute), keeping each image's path below the dataset's image folder.

    Args:
        out_dir (str): where the drawings go.
        score_thr (float): detections drawn have at least this score (detectors only).
    """

    priority = 'NORMAL'

    def __init__(self, out_dir: str, score_thr: float = 0.3):
        self.out_dir = out_dir
        self.score_thr = score_thr
        self._root = None
        self._folder = None

    def before_test(self, runner) -> None:
        self._folder = osp.join(runner.work_dir, self.out_dir)
        prefix = getattr(runner.test_dataloader.dataset, 'data_prefix', None) or {}
        self._root = prefix.get('img') or prefix.get('img_path')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        import mmcv
        detection = 'pred_instances' in (outputs[0] if outputs else {})
        for sample in outputs or []:
            image = mmcv.imread(sample.img_path, channel_order='rgb')
            relative = relative_image_path(sample.img_path, self._root)
            extra = dict(pred_score_thr=self.score_thr) if detection else {}
            runner.visualizer.add_datasample(relative, image, data_sample=sample, show=False,
                                             out_file=osp.join(self._folder, relative), **extra)
