"""Checks that a config's datasets are what it says, before any training step.

mmdet and mmseg find some mistakes late or not at all: mmdet drops the annotations of COCO categories
the config does not name without a word (a detector then never sees them), an unreadable image
stops training whenever the sampler reaches it, and label values beyond the class count corrupt the
loss. :func:`check_datasets` reads every dataset of the config's training, validation and test
loaders and raises :class:`DatasetError` naming the file, the problem and the fix:

* COCO-format detection and instance segmentation (``ann_file`` a JSON file): the annotation file
  exists and parses; every category id the annotations use is in its ``categories``, and every
  category that has annotations is one of ``metainfo['classes']``; every image it lists exists
  under ``data_prefix['img']`` and decodes.
* Semantic segmentation (``data_prefix`` with ``img_path`` and ``seg_map_path``): the images are
  found as mmseg finds them (``img_suffix``, subfolders included), and images of another suffix
  that mmseg would skip are named; each image has its label map, both decode, and label values
  are class indices (after ``reduce_zero_label``) or the ignore value 255.
* A ``palette`` in the metainfo has a colour for every class.

Every image is decoded as the pipeline's loader will decode it (mmcv with its backend: a file cut
short passes a header check but stops training in a DataLoader worker), on a thread pool, with a
progress bar for large sets.

The kit's ``tools/train.py`` and ``tools/test.py`` run it before building the runner
(:func:`checked_config`, which then leaves the hook out);
``custom_hooks=[dict(type='DatasetCheckHook')]`` runs it from mmdet's and mmseg's own tools at the
start of a run (after they have built the datasets, so a missing annotation file is reported by
them first).
"""
import json
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['DatasetError', 'check_datasets', 'checked_config', 'DatasetCheckHook']

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_IGNORE = 255
#: image files mmcv decodes, for naming the images a suffix leaves out
_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: from this many images on, the check draws a progress bar
PROGRESS_FROM = 200


class DatasetError(ValueError):
    """A dataset that does not match its config."""


def check_datasets(cfg, loaders: Tuple[str, ...] = _LOADERS, progress: bool = True) -> List[str]:
    """Checks the datasets of ``loaders`` in ``cfg`` (those it has); returns one line per dataset
    checked. Raises :class:`DatasetError` at the first problem. ``progress``: a progress bar
    (stderr) while decoding large sets."""
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
            line = _check(where, dataset, progress)
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


def _check(where: str, dataset, progress: bool) -> Optional[str]:
    prefix = dataset.get('data_prefix') or {}
    _check_palette(where, dataset)
    if str(dataset.get('ann_file', '')).endswith('.json'):
        return _check_coco(where, dataset, progress)
    if 'seg_map_path' in prefix:
        return _check_segmentation(where, dataset, progress)
    return None


def _check_coco(where: str, dataset, progress: bool) -> str:
    root = dataset.get('data_root') or ''
    ann_file = _join(root, dataset['ann_file'])
    if not osp.isfile(ann_file):
        raise DatasetError(f'{where}: the annotation file {ann_file} does not exist; fix data_root '
                           f'({root!r}) or ann_file ({dataset["ann_file"]!r}) in the config')
    try:
        with open(ann_file) as f:
            data = json.load(f)
        names = {c['id']: c['name'] for c in data['categories']}
        used = {}
        for annotation in data.get('annotations', []):
            used[annotation['category_id']] = used.get(annotation['category_id'], 0) + 1
        images = data['images']
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetError(f'{ann_file} is not a COCO instances file ({type(error).__name__}: '
                           f'{error}); it needs "images", "annotations" and "categories"') from None
    undeclared = sorted(set(used) - set(names), key=str)
    if undeclared:
        counts = ', '.join(f'{i} ({used[i]} annotations)' for i in undeclared)
        raise DatasetError(
            f'{ann_file}: annotations use category id {counts}, which its "categories" list does '
            f'not have (it has ids {", ".join(map(str, sorted(names, key=str)))}): add '
            '{"id": ..., "name": ...} for each to "categories" (and the name to the config\'s '
            'classes), or correct those annotations\' category_id')
    classes = _classes(dataset)
    if classes is not None:
        unknown = sorted({names[i] for i in used} - set(classes))
        if unknown:
            raise DatasetError(
                f'{ann_file} has annotations of {", ".join(map(repr, unknown))}, which '
                f'{where}.metainfo["classes"] does not name (it names {", ".join(classes)}): mmdet '
                'would drop them without a word. Add them to the classes in the config (the '
                'heads\' num_classes follow from it) or remove their annotations')
    folder = _join(root, (dataset.get('data_prefix') or {}).get('img', ''))
    decode = _image_decoder(dataset)
    fix = f'remove it from {ann_file} or fix data_prefix["img"] ({folder!r})'
    _each(lambda image: _decoded(osp.join(folder, image['file_name']), fix, decode), images,
          progress)
    return f'{where}: {len(images)} images, {len(used)} classes in {ann_file}'


def _loader_settings(dataset, kind: str) -> dict:
    """The settings of the pipeline's first transform whose type contains ``kind``."""
    for transform in dataset.get('pipeline') or []:
        if kind in str(transform.get('type', '')):
            return dict(transform)
    return {}


def _image_decoder(dataset) -> Callable[[bytes], object]:
    """Decodes image bytes as the pipeline's ``LoadImageFromFile`` will (mmcv, its colour type and
    decoding backend); returns None for data it cannot decode, as mmcv does."""
    import mmcv
    settings = _loader_settings(dataset, 'LoadImage')
    flag = settings.get('color_type', 'color')
    backend = settings.get('imdecode_backend', 'cv2')
    return lambda data: mmcv.imfrombytes(data, flag=flag, backend=backend)


def _label_decoder(dataset) -> Callable[[bytes], object]:
    """Decodes a label map as mmseg's ``LoadAnnotations`` will (unchanged, its backend)."""
    import mmcv
    backend = _loader_settings(dataset, 'LoadAnnotations').get('imdecode_backend', 'pillow')
    return lambda data: mmcv.imfrombytes(data, flag='unchanged', backend=backend)


def _each(check: Callable, items: Sequence, progress: bool, what: str = 'images'):
    """Runs ``check`` on every item on a thread pool (decoding releases the GIL), with a progress
    bar from :data:`PROGRESS_FROM` items on; the first error (in the items' order) is raised."""
    from tqdm import tqdm
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(
            total=len(items), desc=f'checking {what}', unit='file', leave=False,
            disable=not progress or len(items) < PROGRESS_FROM) as bar:
        futures = [pool.submit(check, item) for item in items]
        try:
            for future in futures:
                future.result()
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _decoded(path: str, fix: str, decode: Callable, what: str = 'an image'):
    if not osp.isfile(path):
        raise DatasetError(f'{path} does not exist: {fix}')
    try:
        with open(path, 'rb') as f:
            value = decode(f.read())
        problem = None if value is not None else 'the decoder returned nothing'
    except Exception as error:  # decoders raise many types for broken files
        value, problem = None, f'{type(error).__name__}: {error}'
    if problem:
        raise DatasetError(f'{path} cannot be decoded as {what} ({problem}; a file cut short or '
                           'not an image): training would stop when it reaches it. Replace the '
                           f'file with a whole copy, or {fix}')
    return value


def _listed(folder: str, suffix: str) -> List[str]:
    """The files under ``folder`` (subfolders included) ending in ``suffix``, relative to it, as
    mmseg's ``BaseSegDataset`` lists them."""
    found = []
    for top, _, files in os.walk(folder):
        for name in files:
            if name.endswith(suffix):
                found.append(osp.relpath(osp.join(top, name), folder))
    return sorted(found)


def _check_segmentation(where: str, dataset, progress: bool) -> str:
    import numpy as np
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
    files = _listed(images, '')
    names = [name for name in files if name.endswith(img_suffix)]
    others = {}
    for name in files:
        suffix = osp.splitext(name)[1].lower()
        if suffix in _IMAGE_SUFFIXES and not name.endswith(img_suffix):
            others.setdefault(suffix, []).append(name)
    found = ', '.join(f'{len(v)} "*{k}"' for k, v in sorted(others.items()))
    if not names:
        hint = (f'; it has {found}: set img_suffix=\'{max(others, key=lambda k: len(others[k]))}\' '
                f'in {where}' if others else '; fix img_suffix or data_prefix["img_path"]')
        raise DatasetError(f'{where}: no "*{img_suffix}" image in {images}{hint}')
    if others:
        example = next(iter(others.values()))[0]
        raise DatasetError(
            f'{where}: {images} has {len(names)} "*{img_suffix}" images (img_suffix) and also '
            f'{found} (e.g. {example}), which mmseg would leave out without a word: convert them '
            f'to {img_suffix} (their label maps keep their names), or move them out')
    decode_image, decode_label = _image_decoder(dataset), _label_decoder(dataset)

    def check(name):
        _decoded(osp.join(images, name), f'remove it from {images}', decode_image)
        label = osp.join(labels, name[:-len(img_suffix)] + seg_suffix)
        if not osp.isfile(label):
            raise DatasetError(f'{label} does not exist: every image in {images} needs its label '
                               f'map ({seg_suffix}) in {labels}')
        values = np.unique(_decoded(label, f'remove its image from {images}', decode_label,
                                    'a label map'))
        if classes is not None:
            if reduce_zero:  # 0 becomes the ignore value, the rest move down by one
                values = np.where(values == 0, _IGNORE, values.astype(np.int64) - 1)
            bad = sorted(int(v) for v in values if v != _IGNORE and v >= len(classes))
            if bad:
                shift = ' (after reduce_zero_label, value - 1)' if reduce_zero else ''
                raise DatasetError(
                    f'{label} has label values {bad}{shift}, but {where}.metainfo["classes"] '
                    f'names {len(classes)} classes ({", ".join(classes)}): name a class for every '
                    f'value (the decode head\'s num_classes follow from them), or mark pixels to '
                    f'ignore with {_IGNORE}')

    _each(check, names, progress, 'images and label maps')
    return f'{where}: {len(names)} images with label maps in {images}'


def _check_palette(where: str, dataset):
    metainfo = dataset.get('metainfo') or {}
    classes, palette = metainfo.get('classes'), metainfo.get('palette')
    if classes and palette is not None and len(palette) < len(classes):
        raise DatasetError(f'{where}.metainfo has {len(palette)} palette colours for '
                           f'{len(classes)} classes: give every class a colour (drawn predictions '
                           'need one), or leave palette out')


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Runs :func:`check_datasets` on the runner's config at the start of a run."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        try:
            lines = check_datasets(runner.cfg)
        except DatasetError as error:  # into the run's log file, not only the traceback
            runner.logger.error(f'dataset check failed: {error}')
            raise
        for line in lines:
            runner.logger.info(f'dataset check: {line}')
