"""docs/own_data.md's walkthrough, run as written on generated data with class names of its own,
and the dataset checks that stop a run whose data does not match its config."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

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


def own_instances(data: str, num_train=8, num_val=4):
    """The synthetic shapes as a user's COCO folder: data/my_instances/{train,val}, annotations
    train.json and val.json, categories renamed to the walkthrough config's classes."""
    paths = make_instance_dataset(data, num_train=num_train, num_val=num_val, seed=5,
                                  size_range=(128, 200))
    target = os.path.join(data, 'my_instances')
    os.makedirs(os.path.join(target, 'annotations'))
    for split, path in paths.items():
        shutil.move(os.path.join(data, 'coco', split), os.path.join(target, split))
        content = json.load(open(path))
        for category, name in zip(content['categories'], ('apple', 'pear', 'plum')):
            category['name'] = name
        json.dump(content, open(os.path.join(target, 'annotations', f'{split}.json'), 'w'))
    return target


def own_semantic(data: str, num_train=8, num_val=4):
    """The synthetic shapes as a user's label maps: class index per pixel from 0 (ADE20K's layout,
    which starts at 1, shifted down)."""
    folder = make_semantic_dataset(data, num_train=num_train, num_val=num_val, seed=6,
                                   size_range=(128, 200))
    for split in ('training', 'validation'):
        labels = os.path.join(folder, 'annotations', split)
        for name in os.listdir(labels):
            path = os.path.join(labels, name)
            cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_GRAYSCALE) - 1)
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


def run_walkthrough(name, cwd) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(  # this checkout's kit
        filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    output = ''
    for command in walkthrough(name):
        assert command[0] == 'python'
        result = subprocess.run([sys.executable, *command[1:]], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=900)
        output += result.stdout + result.stderr
        assert result.returncode == 0, (command, output[-4000:])
    return output


@pytest.mark.training
@pytest.mark.subprocess
@pytest.mark.export
def test_detection_walkthrough_trains_evaluates_draws_and_exports(checkout):
    own_instances(str(checkout / 'data'))
    output = run_walkthrough('detection', checkout)
    work = checkout / 'work_dirs' / 'my_instances'
    assert (work / 'iter_20.pth').exists() and (work / 'model.onnx').exists()
    assert re.search(r'coco/segm_mAP: [0-9.]+', output), output[-2000:]
    assert "'apple'" in output or 'apple' in output  # per-class results name the user's classes
    drawn = [f for _, _, files in os.walk(work) for f in files if f.endswith('.jpg')]
    assert len(drawn) == 4, drawn  # one picture per validation image


@pytest.mark.training
@pytest.mark.subprocess
@pytest.mark.export
def test_segmentation_walkthrough_trains_evaluates_draws_and_exports(checkout):
    own_semantic(str(checkout / 'data'))
    output = run_walkthrough('segmentation', checkout)
    work = checkout / 'work_dirs' / 'my_semantic'
    assert (work / 'iter_20.pth').exists() and (work / 'model.onnx').exists()
    assert re.search(r'\bmIoU: [0-9.]+', output), output[-2000:]
    for name in ('ground', 'road', 'building', 'tree'):
        assert name in output  # mmseg's per-class table
    drawn = [f for _, _, files in os.walk(work) for f in files if f.endswith(('.jpg', '.png'))]
    assert len(drawn) >= 4, drawn


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
    with pytest.raises(DatasetError, match=rf'{re.escape(broken)} cannot be read as an image'):
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
def test_the_kits_train_tool_stops_before_building_anything(checkout):
    root = own_instances(str(checkout / 'data'), num_train=3, num_val=2)
    path = os.path.join(root, 'annotations', 'train.json')
    content = json.load(open(path))
    content['categories'][0]['name'] = 'quince'
    json.dump(content, open(path, 'w'))
    command = walkthrough('detection')[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        'PYTHONPATH')])))
    result = subprocess.run([sys.executable, *command[1:]], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "has annotations of 'quince'" in result.stderr and 'Traceback' not in result.stderr
    assert not (checkout / 'work_dirs' / 'my_instances' / 'iter_20.pth').exists()


def test_the_tools_check_once_and_leave_the_callers_config_alone(tmp_path):
    cfg = loaded(DET, own_instances(str(tmp_path), num_train=3, num_val=2))
    assert [h['type'] for h in cfg.custom_hooks] == ['DatasetCheckHook']
    ready = checked_config(cfg, ('train_dataloader', ))
    assert ready.custom_hooks == [] and cfg.custom_hooks == [dict(type='DatasetCheckHook')]
