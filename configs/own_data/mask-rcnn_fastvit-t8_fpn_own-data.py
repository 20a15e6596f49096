# Mask R-CNN with FastViT-T8 on your own COCO-format data (docs/own_data.md): images in train/ and
# val/, their instances in annotations/train.json and annotations/val.json. It inherits the demo
# detector's small recipe, which trains on a CPU in minutes; for a full-size model set _base_ to a
# shipped config (e.g. '../fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py') and keep the rest.
_base_ = '../demo/mask-rcnn_fastvit-t8_fpn_synthetic.py'

data_root = 'data/my_instances/'
classes = ('apple', 'pear', 'plum')  # the names of your categories, as in the JSON files
# One colour per class in drawings (RGB): the first of 20 colours that are easy to tell apart; add
# more for more classes (the dataset check asks for one per class).
palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
           (30, 15, 255), (170, 110, 40), (255, 225, 25), (128, 0, 0), (170, 255, 195),
           (128, 128, 0), (255, 255, 255), (0, 0, 128), (128, 128, 128), (0, 0, 0)]
metainfo = dict(_delete_=True, classes=classes, palette=palette[:len(classes)])

model = dict(roi_head=dict(bbox_head=dict(num_classes=len(classes)),
                           mask_head=dict(num_classes=len(classes))))
train_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo,
    ann_file='annotations/train.json', data_prefix=dict(img='train/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo,
    ann_file='annotations/val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
# Checks the data against the config when mmdet's own tools/train.py runs it (the kit's tools check
# before building anything).
custom_hooks = [dict(type='DatasetCheckHook')]
