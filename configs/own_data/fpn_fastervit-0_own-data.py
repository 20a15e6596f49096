# Semantic FPN with FasterViT-0 on your own images and label maps (docs/own_data.md): images in
# images/training and images/validation (.jpg), label maps of the same names in annotations/...
# (.png, one class index per pixel, 255 where nothing is to be learnt). It inherits the demo
# segmentor's small recipe, which trains on a CPU in minutes; for a full-size model set _base_ to a
# shipped config (e.g. '../fastervit/upernet_fastervit-0_8xb2-160k_ade20k-512x512.py').
_base_ = '../demo/fpn_fastervit-0_synthetic.py'

data_root = 'data/my_semantic/'
classes = ('ground', 'road', 'building', 'tree')  # class i is label value i
crop_size = (192, 256)

model = dict(decode_head=dict(num_classes=len(classes)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # label values as they are (the demo's ADE20K layout shifts them)
    dict(type='RandomResize', scale=(320, 240), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 240), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(data_root=data_root, metainfo=dict(_delete_=True, classes=classes),
               reduce_zero_label=False)
train_dataloader = dict(dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Checks the data against the config when mmseg's own tools/train.py runs it (the kit's tools check
# before building anything).
custom_hooks = [dict(type='DatasetCheckHook')]
