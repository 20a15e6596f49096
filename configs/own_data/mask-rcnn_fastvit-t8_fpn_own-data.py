# Mask R-CNN with FastViT-T8 on your own COCO-format data (docs/own_data.md): images in train/ and
# val/, their instances in annotations/train.json and annotations/val.json. It inherits the demo
# detector's small recipe, which trains on a CPU in minutes; for a full-size model set _base_ to a
# shipped config (e.g. '../fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py') and keep the rest.
_base_ = '../demo/mask-rcnn_fastvit-t8_fpn_synthetic.py'

data_root = 'data/my_instances/'
classes = ('apple', 'pear', 'plum')  # the names of your categories, as in the JSON files

model = dict(roi_head=dict(bbox_head=dict(num_classes=len(classes)),
                           mask_head=dict(num_classes=len(classes))))
train_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=dict(_delete_=True, classes=classes),
    ann_file='annotations/train.json', data_prefix=dict(img='train/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=dict(_delete_=True, classes=classes),
    ann_file='annotations/val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
# Checks the data against the config when mmdet's own tools/train.py runs it (the kit's tools check
# before building anything).
custom_hooks = [dict(type='DatasetCheckHook')]
