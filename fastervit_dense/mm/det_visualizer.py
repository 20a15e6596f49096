"""Detection drawings whose labels stay legible where boxes overlap.

mmdet's ``DetLocalVisualizer`` writes each box's label at the box's top-left corner, so where
objects overlap (or their corners are close) labels land on one another and neither can be read.
:class:`LegibleDetVisualizer` draws the same picture and moves a label that would cover one already
drawn on the image to the nearest free place above or below it. The demo's and the own-data
detection configs use it (``visualizer=dict(type='LegibleDetVisualizer', ...)``); so do
``tools/test.py --show-dir`` and the demo's pictures, which draw with the config's visualizer.
"""
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer

__all__ = ['LegibleDetVisualizer', 'label_extents']

_GAP = 1.0  # pixels between labels moved apart
_TRIES = 20  # places tried on each side before a label is left where mmdet put it


def label_extents(visualizer, texts=None):
    """The extents of ``texts`` (by default every label drawn on the visualizer's current image),
    with their background boxes, as (x0, y0, x1, y1) in image pixels (y down)."""
    renderer = visualizer.fig_save.canvas.get_renderer()
    to_pixels = visualizer.ax_save.transData.inverted()
    extents = []
    for text in visualizer.ax_save.texts if texts is None else texts:
        box = text.get_window_extent(renderer)  # the patch's own extent is known only once drawn
        patch = text.get_bbox_patch()
        pad = (patch.get_boxstyle().pad * renderer.points_to_pixels(text.get_fontsize())
               if patch is not None else 0.0)
        (x0, y0), (x1, y1) = to_pixels.transform([[box.x0 - pad, box.y0 - pad],
                                                  [box.x1 + pad, box.y1 + pad]])
        extents.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return extents


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@VISUALIZERS.register_module()
class LegibleDetVisualizer(DetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` (same arguments, same drawing) with labels kept apart: each
    label drawn over one already on the image moves up or down by whole label heights to the
    nearest place inside the image that covers none (left where it is if there is none)."""

    def set_image(self, image) -> None:
        self._placed = []  # extents of the labels on this image
        super().set_image(image)

    def draw_texts(self, texts, positions, *args, **kwargs):
        drawn = len(self.ax_save.texts)
        super().draw_texts(texts, positions, *args, **kwargs)
        new = self.ax_save.texts[drawn:]
        for text, extent in zip(new, label_extents(self, new)):
            shift = self._free_shift(extent, self._placed)
            if shift:
                x, y = text.get_position()
                text.set_position((x, y + shift))
                extent = (extent[0], extent[1] + shift, extent[2], extent[3] + shift)
            self._placed.append(extent)
        return self

    def _free_shift(self, extent, placed) -> float:
        """The smallest vertical move that puts ``extent`` clear of ``placed`` inside the image."""
        if not any(_overlaps(extent, other) for other in placed):
            return 0.0
        step = extent[3] - extent[1] + _GAP
        for k in range(1, _TRIES + 1):
            for shift in (k * step, -k * step):
                moved = (extent[0], extent[1] + shift, extent[2], extent[3] + shift)
                if moved[1] >= 0 and moved[3] <= self.height and not any(
                        _overlaps(moved, other) for other in placed):
                    return shift
        return 0.0
