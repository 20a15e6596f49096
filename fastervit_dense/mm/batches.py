"""Training batches in mmdet's and mmseg's data-sample format, generated on the fly, for the tests
and the training benchmark."""
import torch

__all__ = ['det_batch', 'seg_batch']


def det_batch(shapes, with_mask, num_classes, seed=0):
    """A detector's training batch: uint8 images of ``shapes`` (C, H, W), three well-formed boxes
    each (at least 24 px a side) with labels below ``num_classes``, and their box masks when
    ``with_mask``."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for c, h, w in shapes:
        inputs.append(torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=gen))
        x1 = torch.randint(0, w - 48, (3, ), generator=gen).float()
        y1 = torch.randint(0, h - 48, (3, ), generator=gen).float()
        bw = torch.randint(24, 48, (3, ), generator=gen).float()
        bh = torch.randint(24, 48, (3, ), generator=gen).float()
        boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                             scale_factor=(1.0, 1.0), img_id=0, img_path='x.jpg'))
        gt = InstanceData(bboxes=boxes, labels=torch.randint(0, num_classes, (3, ), generator=gen))
        if with_mask:
            masks = torch.zeros(3, h, w, dtype=torch.uint8)
            for i, (a, b, c_, d) in enumerate(boxes.long().tolist()):
                masks[i, b:d, a:c_] = 1
            gt.masks = BitmapMasks(masks.numpy(), h, w)
        sample.gt_instances = gt
        sample.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_batch(shapes, num_classes):
    """A segmentor's training batch: uint8 images of ``shapes`` (C, H, W) with random labels."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for c, h, w in shapes:
        inputs.append(torch.randint(0, 256, (c, h, w), dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                 scale_factor=(1.0, 1.0), flip=False, img_path='synthetic.png',
                                 reduce_zero_label=False))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
