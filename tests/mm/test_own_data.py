"""docs/own_data.md's walkthrough, run as written on generated data with class names of its own,
and the dataset checks that stop a run whose data does not match its config."""
import json
import os
import re
import shlex
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from fastervit_dense.mm.dataset_check import DatasetError, check_datasets, checked_config
from fastervit_dense.mm.synthetic import make_instance_dataset, make_semantic_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DET = os.path.join(ROOT, 'configs', 'own_data', 'mask-rcnn_fastvit-t8_fpn_own-data.py')
SEG = os.path.join(ROOT, 'configs', 'own_data', 'fpn_fastervit-0_own-data.py')


def walkthrough(name) -> list:
    text = open(os.path.join(ROOT, 'docs', 'own_data.md')).read()
    block = re.search(rf'<!-- walkthrough: {name} -->\n```bash\n(.*?)```', text, re.S).group(1)
    return [shlex.split(line) for line in block.strip().splitlines()]


def in_subfolders(folder: str, names: list) -> dict:
    """Moves ``names`` (files in ``folder``) into subfolders batch1/ and batch2/, half in each,
    named img_0, img_1, ... in both (the same names twice); returns {old name: new path}."""
    moved = {}
    half = (len(names) + 1) // 2
    for index, name in enumerate(sorted(names)):
        new = os.path.join(f'batch{1 + index // half}',
                           f'img_{index % half}{os.path.splitext(name)[1]}')
        os.makedirs(os.path.join(folder, os.path.dirname(new)), exist_ok=True)
        os.replace(os.path.join(folder, name), os.path.join(folder, new))
        moved[name] = new
    return moved


def own_instances(data: str, num_train=8, num_val=4, subfolders=False):
    """The synthetic shapes as a user's COCO folder: data/my_instances/{train,val}, annotations
    train.json and val.json, categories renamed to the walkthrough config's classes; with
    ``subfolders`` the validation images in val/batch1 and val/batch2 under the same names."""
    paths = make_instance_dataset(data, num_train=num_train, num_val=num_val, seed=5,
                                  size_range=(128, 200))
    target = os.path.join(data, 'my_instances')
    os.makedirs(os.path.join(target, 'annotations'))
    for split, path in paths.items():
        shutil.move(os.path.join(data, 'coco', split), os.path.join(target, split))
        content = json.load(open(path))
        for category, name in zip(content['categories'], ('apple', 'pear', 'plum')):
            category['name'] = name
        if subfolders and split == 'val':
            folder = os.path.join(target, split)
            moved = in_subfolders(folder, os.listdir(folder))
            for image in content['images']:
                image['file_name'] = moved[image['file_name']]
        json.dump(content, open(os.path.join(target, 'annotations', f'{split}.json'), 'w'))
    return target


def own_semantic(data: str, num_train=8, num_val=4, subfolders=False):
    """The synthetic shapes as a user's label maps: class index per pixel from 0 (ADE20K's layout,
    which starts at 1, shifted down); with ``subfolders`` the validation images and their label
    maps in batch1/ and batch2/ under the same names."""
    folder = make_semantic_dataset(data, num_train=num_train, num_val=num_val, seed=6,
                                   size_range=(128, 200))
    for split in ('training', 'validation'):
        labels = os.path.join(folder, 'annotations', split)
        for name in os.listdir(labels):
            path = os.path.join(labels, name)
            cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_GRAYSCALE) - 1)
    if subfolders:
        for kind in ('images', 'annotations'):
            split = os.path.join(folder, kind, 'validation')
            in_subfolders(split, os.listdir(split))
    target = os.path.join(data, 'my_semantic')
    shutil.move(folder, target)
    return target


@pytest.fixture
def checkout(tmp_path):
    """A working folder laid out like the repository root (tools/ and configs/ of this checkout),
    with the user's data under data/."""
    for name in ('tools', 'configs'):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    (tmp_path / 'data').mkdir()
    return tmp_path


def run_walkthrough(name, cwd, script_command) -> str:
    """The walkthrough's commands, each ``python SCRIPT ...`` run in this process from ``cwd``
    (the train tool is started as a user starts it by the last test of this file)."""
    output = ''
    for command in walkthrough(name):
        assert command[0] == 'python'
        result = script_command(*command[1:], cwd=cwd)
        output += result.stdout + result.stderr
        assert result.returncode == 0, (command, output[-4000:])
    return output


SUBFOLDERS = {os.path.join(f'batch{b}', f'img_{i}') for b in (1, 2) for i in (0, 1)}


def drawn_files(folder) -> set:
    """The drawings under ``folder``, by path relative to it without the suffix."""
    return {os.path.splitext(os.path.relpath(os.path.join(top, name), folder))[0]
            for top, _, names in os.walk(folder) for name in names}


def assert_verified_and_evaluated(output: str, work, framework: str):
    """The walkthrough's export verified on the validation images and its exported model scored
    by the config's metric on both runtimes."""
    assert (work / 'model.onnx').exists() and not (work / 'model.failed-verification.onnx').exists()
    assert "on the first 3 image(s) of the config's test set" in output
    assert f'verified: the exported model agrees with {framework} in 9 comparisons' in output
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith('metric '))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith('ms per image'))
    table = lines[start:end + 1]
    assert table[0].split() == ['metric', 'PyTorch', 'onnxruntime', 'openvino'], output[-3000:]
    # every metric of the exported file equal to PyTorch's within 0.1 points (COCO's are shares)
    tolerance = 0.001 if framework == 'mmdet' else 0.1
    rows = [line.split() for line in table[1:-1]]
    assert len(rows) >= 3, table
    for name, reference, *exported in rows:
        assert all(abs(float(v) - float(reference)) <= tolerance + 1e-9 for v in exported), table


@pytest.mark.training
@pytest.mark.export
def test_detection_walkthrough_trains_evaluates_draws_and_exports(checkout, script_command):
    own_instances(str(checkout / 'data'), subfolders=True)
    output = run_walkthrough('detection', checkout, script_command)
    work = checkout / 'work_dirs' / 'my_instances'
    assert (work / 'iter_20.pth').exists()
    assert re.search(r'coco/segm_mAP: [0-9.]+', output), output[-2000:]
    assert "'apple'" in output or 'apple' in output  # per-class results name the user's classes
    # one picture per validation image, under its own subfolder and name (the same names twice)
    assert drawn_files(work / 'shown') == SUBFOLDERS
    assert_verified_and_evaluated(output, work, 'mmdet')


@pytest.mark.training
@pytest.mark.export
def test_segmentation_walkthrough_trains_evaluates_draws_and_exports(checkout, script_command):
    own_semantic(str(checkout / 'data'), subfolders=True)
    output = run_walkthrough('segmentation', checkout, script_command)
    work = checkout / 'work_dirs' / 'my_semantic'
    assert (work / 'iter_20.pth').exists()
    assert re.search(r'\bmIoU: [0-9.]+', output), output[-2000:]
    for name in ('ground', 'road', 'building', 'tree'):
        assert name in output  # mmseg's per-class table
    assert drawn_files(work / 'shown') == SUBFOLDERS
    assert_verified_and_evaluated(output, work, 'mmseg')


def loaded(config, data_root):
    cfg = Config.fromfile(config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root + '/'
    if 'ann_file' in cfg.val_evaluator:
        cfg.val_evaluator.ann_file = data_root + '/annotations/val.json'
    return cfg


def test_matching_data_passes_and_each_dataset_is_reported(tmp_path):
    cfg = loaded(DET, own_instances(str(tmp_path), num_train=3, num_val=2))
    report = check_datasets(cfg)
    assert len(report) == 2 and 'train_dataloader.dataset: 3 images' in report[0]
    cfg = loaded(SEG, own_semantic(str(tmp_path), num_train=3, num_val=2))
    assert len(check_datasets(cfg)) == 2


def test_a_class_the_config_does_not_name_is_refused(tmp_path):
    root = own_instances(str(tmp_path), num_train=3, num_val=2)
    path = os.path.join(root, 'annotations', 'train.json')
    content = json.load(open(path))
    content['categories'][2]['name'] = 'quince'
    json.dump(content, open(path, 'w'))
    with pytest.raises(DatasetError, match=rf"{re.escape(path)} has annotations of 'quince', "
                       r'which train_dataloader.dataset.metainfo\["classes"\] does not name.*'
                       r'Add them to the classes in the config'):
        check_datasets(loaded(DET, root))


def test_a_missing_annotation_file_names_the_path_and_the_fix(tmp_path):
    root = own_instances(str(tmp_path), num_train=3, num_val=2)
    os.remove(os.path.join(root, 'annotations', 'val.json'))
    with pytest.raises(DatasetError, match=r'val_dataloader.dataset: the annotation file .*val.json '
                       r'does not exist; fix data_root'):
        check_datasets(loaded(DET, root))


def test_an_unreadable_image_is_named(tmp_path):
    root = own_instances(str(tmp_path), num_train=3, num_val=2)
    broken = os.path.join(root, 'train', 'train_00002.jpg')
    open(broken, 'wb').write(b'\xff\xd8 not an image')
    with pytest.raises(DatasetError, match=rf'{re.escape(broken)} cannot be decoded as an image'):
        check_datasets(loaded(DET, root))
    os.remove(broken)
    with pytest.raises(DatasetError, match=rf'{re.escape(broken)} does not exist'):
        check_datasets(loaded(DET, root))


def test_label_values_beyond_the_classes_are_refused(tmp_path):
    root = own_semantic(str(tmp_path), num_train=3, num_val=2)
    label = os.path.join(root, 'annotations', 'training', 'training_00001.png')
    values = cv2.imread(label, cv2.IMREAD_GRAYSCALE)
    values[:4, :4] = 7
    values[4:8, :4] = 255  # the ignore value is allowed
    cv2.imwrite(label, values)
    with pytest.raises(DatasetError, match=rf'{re.escape(label)} has label values \[7\], but '
                       r'.*names 4 classes \(ground, road, building, tree\)'):
        check_datasets(loaded(SEG, root))
    os.remove(label)
    with pytest.raises(DatasetError, match=r'training_00001.png does not exist: every image'):
        check_datasets(loaded(SEG, root))


@pytest.mark.subprocess
def test_the_kits_train_tool_stops_before_building_anything(checkout, script_command):
    root = own_instances(str(checkout / 'data'), num_train=3, num_val=2)
    path = os.path.join(root, 'annotations', 'train.json')
    content = json.load(open(path))
    content['categories'][0]['name'] = 'quince'
    json.dump(content, open(path, 'w'))
    command = walkthrough('detection')[0]
    env = dict(PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    result = script_command(*command[1:], cwd=checkout, env=env, new_interpreter=True)
    assert result.returncode != 0
    assert "has annotations of 'quince'" in result.stderr and 'Traceback' not in result.stderr
    assert not (checkout / 'work_dirs' / 'my_instances' / 'iter_20.pth').exists()


def test_the_tools_check_once_and_leave_the_callers_config_alone(tmp_path):
    cfg = loaded(DET, own_instances(str(tmp_path), num_train=3, num_val=2))
    assert [h['type'] for h in cfg.custom_hooks] == ['DatasetCheckHook']
    ready = checked_config(cfg, ('train_dataloader', ))
    assert ready.custom_hooks == [] and cfg.custom_hooks == [dict(type='DatasetCheckHook')]


def cut_short(path, keep=1 / 3):
    """The file cut to a share of its bytes, as an interrupted copy or download leaves it."""
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:int(len(data) * keep)])


def test_an_image_cut_short_is_decoded_and_named_before_training(tmp_path):
    """A JPEG cut to a third of its bytes opens and passes a header check; the check decodes it as
    mmcv's loader will, and stops there."""
    root = own_instances(str(tmp_path), num_train=3, num_val=2)
    broken = os.path.join(root, 'train', 'train_00001.jpg')
    cut_short(broken)
    from PIL import Image
    with Image.open(broken) as image:
        image.verify()  # what a header check sees: nothing wrong
    import mmcv
    assert mmcv.imread(broken) is None  # mmcv's loader: nothing decoded (it then asserts)
    with pytest.raises(DatasetError, match=rf'{re.escape(broken)} cannot be decoded as an image '
                       r'\(the decoder returned nothing; a file cut short or not an image\): '
                       r'training would stop when it reaches it. Replace the file with a whole '
                       rf'copy, or remove it from {re.escape(root)}.*train.json'):
        check_datasets(loaded(DET, root))


def test_a_label_map_cut_short_is_named(tmp_path):
    root = own_semantic(str(tmp_path), num_train=3, num_val=2)
    broken = os.path.join(root, 'annotations', 'validation', 'validation_00001.png')
    cut_short(broken, keep=0.5)
    with pytest.raises(DatasetError, match=rf'{re.escape(broken)} cannot be decoded as a label '
                       r'map \(.*\): training would stop when it reaches it'):
        check_datasets(loaded(SEG, root))


def test_an_annotation_of_a_category_missing_from_categories_is_named(tmp_path):
    root = own_instances(str(tmp_path), num_train=3, num_val=2)
    path = os.path.join(root, 'annotations', 'train.json')
    content = json.load(open(path))
    ids = sorted(c['id'] for c in content['categories'])
    content['annotations'][0]['category_id'] = 7
    content['annotations'][1]['category_id'] = 7
    json.dump(content, open(path, 'w'))
    with pytest.raises(DatasetError, match=rf'{re.escape(path)}: annotations use category id 7 '
                       r'\(2 annotations\), which its "categories" list does not have \(it has '
                       rf'ids {", ".join(map(str, ids))}\): add {{"id": ..., "name": ...}} for each '
                       r'to "categories"'):
        check_datasets(loaded(DET, root))


def as_png(folder):
    for top, _, names in os.walk(folder):
        for name in names:
            if name.endswith('.jpg'):
                path = os.path.join(top, name)
                cv2.imwrite(path[:-4] + '.png', cv2.imread(path))
                os.remove(path)


def test_png_images_are_found_and_the_setting_named(tmp_path):
    root = own_semantic(str(tmp_path), num_train=3, num_val=2, subfolders=True)
    as_png(os.path.join(root, 'images'))
    with pytest.raises(DatasetError, match=r'train_dataloader.dataset: no "\*.jpg" image in '
                       r'.*images/training; it has 3 "\*.png": set img_suffix=\'.png\''):
        check_datasets(loaded(SEG, root))
    cfg = loaded(SEG, root)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.img_suffix = '.png'
    report = check_datasets(cfg)  # the validation images in subfolders are found too
    assert any('2 images with label maps' in line and 'validation' in line for line in report)


def test_a_png_image_cut_short_is_named(tmp_path):
    root = own_semantic(str(tmp_path), num_train=3, num_val=2)
    as_png(os.path.join(root, 'images'))
    broken = os.path.join(root, 'images', 'training', 'training_00000.png')
    cut_short(broken)
    cfg = loaded(SEG, root)
    cfg.train_dataloader.dataset.img_suffix = '.png'
    with pytest.raises(DatasetError, match=rf'{re.escape(broken)} cannot be decoded as an image'):
        check_datasets(cfg, ('train_dataloader', ))


def test_images_of_another_suffix_than_the_configs_are_named(tmp_path):
    root = own_semantic(str(tmp_path), num_train=3, num_val=2)
    image = os.path.join(root, 'images', 'training', 'training_00002.jpg')
    cv2.imwrite(image[:-4] + '.png', cv2.imread(image))
    os.remove(image)
    with pytest.raises(DatasetError, match=r'has 2 "\*.jpg" images \(img_suffix\) and also 1 '
                       r'"\*.png" \(e.g. training_00002.png\), which mmseg would leave out'):
        check_datasets(loaded(SEG, root))


def test_a_palette_shorter_than_the_classes_is_named(tmp_path):
    cfg = loaded(DET, own_instances(str(tmp_path), num_train=3, num_val=2))
    cfg.train_dataloader.dataset.metainfo.palette = [(0, 0, 0)]
    with pytest.raises(DatasetError, match=r'train_dataloader.dataset.metainfo has 1 palette '
                       r'colours for 3 classes'):
        check_datasets(cfg)


@pytest.mark.parametrize('config', [DET, SEG])
def test_own_classes_get_colours_told_apart(config):
    """Every own-data config gives each of its classes a colour of its own, far from the others
    (no two greens), and the list behind it has 20 such colours for more classes."""
    cfg = Config.fromfile(config)
    metainfo = cfg.test_dataloader.dataset.metainfo
    assert len(metainfo.palette) == len(metainfo.classes)
    colours = np.array(cfg.palette, float)
    assert len(colours) == 20
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distances[~np.eye(len(colours), dtype=bool)].min() > 60
    assert [tuple(c) for c in metainfo.palette] == [tuple(c) for c in cfg.palette[:len(
        metainfo.classes)]]


def test_the_hook_writes_its_message_into_the_runs_log(tmp_path):
    """With mmdet's / mmseg's own tools DatasetCheckHook stops the run: its message goes into the
    run's log file too, not only into the traceback."""
    from fastervit_dense.mm.runner import build_runner, load_config
    root = own_instances(str(tmp_path), num_train=3, num_val=2)
    cut_short(os.path.join(root, 'train', 'train_00001.jpg'))
    cfg = load_config(DET, work_dir=str(tmp_path / 'work'))
    cfg.merge_from_dict(loaded(DET, root).to_dict())
    runner = build_runner(cfg)
    with pytest.raises(DatasetError, match='cannot be decoded as an image'):
        runner.train()
    log = open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'dataset check failed: ' in log and 'train_00001.jpg cannot be decoded' in log


def test_a_large_set_is_decoded_with_a_progress_bar(tmp_path, capsys, monkeypatch):
    from fastervit_dense.mm import dataset_check
    root = own_instances(str(tmp_path), num_train=6, num_val=2)
    monkeypatch.setattr(dataset_check, 'PROGRESS_FROM', 5)
    check_datasets(loaded(DET, root), ('train_dataloader', ))
    assert 'checking images' in capsys.readouterr().err
    check_datasets(loaded(DET, root), ('train_dataloader', ), progress=False)
    assert 'checking images' not in capsys.readouterr().err
