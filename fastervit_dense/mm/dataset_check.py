"""Checks that a config's datasets are what it says, before any training step.

mmdet and mmseg find some mistakes late or not at all: mmdet drops the annotations of COCO categories
the config does not name without a word (a detector then never sees them), an unreadable image
stops training whenever the sampler reaches it, and label values beyond the class count corrupt the
loss. :func:`check_datasets` reads every dataset of the config's training, validation and test
loaders and raises :class:`DatasetError` naming the file, the problem and the fix:

* COCO-format detection and instance segmentation (``ann_file`` a JSON file): the annotation file
  exists and parses; every category that has annotations is one of ``metainfo['classes']``; every
  image it lists exists under ``data_prefix['img']`` and opens as an image.
* Semantic segmentation (``data_prefix`` with ``img_path`` and ``seg_map_path``): each image has its
  label map, both open, and label values are class indices (after ``reduce_zero_label``) or the
  ignore value 255.

The kit's ``tools/train.py`` and ``tools/test.py`` run it before building the runner
(:func:`checked_config`, which then leaves the hook out);
``custom_hooks=[dict(type='DatasetCheckHook')]`` runs it from mmdet's and mmseg's own tools at the
start of a run (after they have built the datasets, so a missing annotation file is reported by
them first).
"""
import json
import os
import os.path as osp
from typing import Iterator, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['DatasetError', 'check_datasets', 'checked_config', 'DatasetCheckHook']

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_IGNORE = 255


class DatasetError(ValueError):
    """A dataset that does not match its config."""


def check_datasets(cfg, loaders: Tuple[str, ...] = _LOADERS) -> List[str]:
    """Checks the datasets of ``loaders`` in ``cfg`` (those it has); returns one line per dataset
    checked. Raises :class:`DatasetError` at the first problem."""
    done, report = set(), []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg or not loader_cfg.get('dataset'):
            continue
        for where, dataset in _datasets(f'{loader}.dataset', loader_cfg['dataset']):
            key = json.dumps(_plain(dataset), sort_keys=True, default=str)
            if key in done:
                continue
            done.add(key)
            line = _check(where, dataset)
            if line:
                report.append(line)
    return report


def checked_config(cfg, loaders: Tuple[str, ...]):
    """What the kit's tools run before building anything: :func:`check_datasets` on ``loaders``,
    then a copy of ``cfg`` without :class:`DatasetCheckHook`, whose checks would read the same
    files again at the start of the run."""
    import copy
    check_datasets(cfg, loaders)
    cfg = copy.deepcopy(cfg)
    hooks = cfg.get('custom_hooks') or []
    cfg.custom_hooks = [h for h in hooks if h.get('type') != 'DatasetCheckHook']
    return cfg


def _plain(value):
    if hasattr(value, 'to_dict'):
        return value.to_dict()
    return value


def _datasets(where: str, dataset) -> Iterator[Tuple[str, dict]]:
    """The leaf datasets of a dataset config (through RepeatDataset, ConcatDataset and the like)."""
    if 'dataset' in dataset:
        yield from _datasets(f'{where}.dataset', dataset['dataset'])
    elif 'datasets' in dataset:
        for i, inner in enumerate(dataset['datasets']):
            yield from _datasets(f'{where}.datasets[{i}]', inner)
    else:
        yield where, dataset


def _classes(dataset) -> Optional[Tuple[str, ...]]:
    classes = (dataset.get('metainfo') or {}).get('classes')
    return tuple(classes) if classes else None


def _join(root: str, path: str) -> str:
    return path if osp.isabs(path) else osp.join(root, path)


def _check(where: str, dataset) -> Optional[str]:
    prefix = dataset.get('data_prefix') or {}
    if str(dataset.get('ann_file', '')).endswith('.json'):
        return _check_coco(where, dataset)
    if 'seg_map_path' in prefix:
        return _check_segmentation(where, dataset)
    return None


def _check_coco(where: str, dataset) -> str:
    root = dataset.get('data_root') or ''
    ann_file = _join(root, dataset['ann_file'])
    if not osp.isfile(ann_file):
        raise DatasetError(f'{where}: the annotation file {ann_file} does not exist; fix data_root '
                           f'({root!r}) or ann_file ({dataset["ann_file"]!r}) in the config')
    try:
        with open(ann_file) as f:
            data = json.load(f)
        names = {c['id']: c['name'] for c in data['categories']}
        used = {a['category_id'] for a in data.get('annotations', [])}
        images = data['images']
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetError(f'{ann_file} is not a COCO instances file ({type(error).__name__}: '
                           f'{error}); it needs "images", "annotations" and "categories"') from None
    classes = _classes(dataset)
    if classes is not None:
        unknown = sorted({names.get(i, f'category id {i}') for i in used} - set(classes))
        if unknown:
            raise DatasetError(
                f'{ann_file} has annotations of {", ".join(map(repr, unknown))}, which '
                f'{where}.metainfo["classes"] does not name (it names {", ".join(classes)}): mmdet '
                'would drop them without a word. Add them to the classes in the config (the '
                'heads\' num_classes follow from it) or remove their annotations')
    folder = _join(root, (dataset.get('data_prefix') or {}).get('img', ''))
    for image in images:
        _check_image(osp.join(folder, image['file_name']),
                     f'remove it from {ann_file} or fix data_prefix["img"] ({folder!r})')
    return f'{where}: {len(images)} images, {len(used)} classes in {ann_file}'


def _check_image(path: str, fix: str):
    from PIL import Image
    if not osp.isfile(path):
        raise DatasetError(f'{path} does not exist: {fix}')
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for broken files
        raise DatasetError(f'{path} cannot be read as an image ({type(error).__name__}: {error}); '
                           f'replace it or {fix}') from None


def _check_segmentation(where: str, dataset) -> str:
    import numpy as np
    from PIL import Image
    root = dataset.get('data_root') or ''
    prefix = dataset['data_prefix']
    images = _join(root, prefix.get('img_path', ''))
    labels = _join(root, prefix['seg_map_path'])
    for folder, key in ((images, 'img_path'), (labels, 'seg_map_path')):
        if not osp.isdir(folder):
            raise DatasetError(f'{where}: the folder {folder} does not exist; fix data_root '
                               f'({root!r}) or data_prefix["{key}"] in the config')
    img_suffix = dataset.get('img_suffix', '.jpg')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    reduce_zero = bool(dataset.get('reduce_zero_label', False))
    classes = _classes(dataset)
    names = sorted(n for n in os.listdir(images) if n.endswith(img_suffix))
    if not names:
        raise DatasetError(f'{where}: no "*{img_suffix}" image in {images}; fix img_suffix or '
                           'data_prefix["img_path"]')
    for name in names:
        _check_image(osp.join(images, name), f'remove it from {images}')
        label = osp.join(labels, name[:-len(img_suffix)] + seg_suffix)
        if not osp.isfile(label):
            raise DatasetError(f'{label} does not exist: every image in {images} needs its label '
                               f'map ({seg_suffix}) in {labels}')
        try:
            values = np.unique(np.asarray(Image.open(label)))
        except Exception as error:
            raise DatasetError(f'{label} cannot be read as a label map ({type(error).__name__}: '
                               f'{error}); replace it') from None
        if classes is not None:
            if reduce_zero:  # 0 becomes the ignore value, the rest move down by one
                values = np.where(values == 0, _IGNORE, values - 1)
            bad = sorted(int(v) for v in values if v != _IGNORE and v >= len(classes))
            if bad:
                shift = ' (after reduce_zero_label, value - 1)' if reduce_zero else ''
                raise DatasetError(
                    f'{label} has label values {bad}{shift}, but {where}.metainfo["classes"] '
                    f'names {len(classes)} classes ({", ".join(classes)}): name a class for every '
                    f'value (the decode head\'s num_classes follow from them), or mark pixels to '
                    f'ignore with {_IGNORE}')
    return f'{where}: {len(names)} images with label maps in {images}'


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Runs :func:`check_datasets` on the runner's config at the start of a run."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        for line in check_datasets(runner.cfg):
            runner.logger.info(f'dataset check: {line}')
