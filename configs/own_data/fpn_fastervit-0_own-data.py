# Semantic FPN with FasterViT-0 on your own images and label maps (docs/own_data.md): images in
# images/training and images/validation (img_suffix below; subfolders allowed), label maps of the
# same names in annotations/... (.png, one class index per pixel, 255 where nothing is to be learnt). It inherits the demo
# segmentor's small recipe, which trains on a CPU in minutes; for a full-size model set _base_ to a
# shipped config (e.g. '../fastervit/upernet_fastervit-0_8xb2-160k_ade20k-512x512.py').
_base_ = '../demo/fpn_fastervit-0_synthetic.py'

data_root = 'data/my_semantic/'
classes = ('ground', 'road', 'building', 'tree')  # class i is label value i
img_suffix = '.jpg'  # the images' file ending: '.png' for PNG images
# One colour per class in drawings (RGB): the first of 20 colours that are easy to tell apart; add
# more for more classes (the dataset check asks for one per class).
palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
           (30, 15, 255), (170, 110, 40), (255, 225, 25), (128, 0, 0), (170, 255, 195),
           (128, 128, 0), (255, 255, 255), (0, 0, 128), (128, 128, 128), (0, 0, 0)]
metainfo = dict(_delete_=True, classes=classes, palette=palette[:len(classes)])
crop_size = (160, 224)  # the data preprocessor pads each batch to it (the demo crops 112x224)

model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=len(classes)))
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
dataset = dict(data_root=data_root, metainfo=metainfo, img_suffix=img_suffix,
               reduce_zero_label=False)
train_dataloader = dict(dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Checks the data against the config when mmseg's own tools/train.py runs it (the kit's tools check
# before building anything).
custom_hooks = [dict(type='DatasetCheckHook')]
