"""The kit's smallest real job: builds each registered backbone from an mmdet model config and
prints its multi-scale output shapes at a few input sizes, square and not."""
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import fastervit_dense  # noqa: F401  (registers the backbones)

CONFIG = """
custom_imports = dict(imports=['fastervit_dense'], allow_failed_imports=False)
backbones = [
    dict(type='FasterViT', arch='0', out_indices=(0, 1, 2, 3)),
    dict(type='FastViT', arch='sa12', out_indices=(0, 1, 2, 3)),
]
"""


def main():
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromstring(CONFIG, file_format='.py')
    for backbone_cfg in cfg.backbones:
        model = MODELS.build(backbone_cfg).eval()
        print(f"{backbone_cfg['type']} arch={backbone_cfg['arch']}")
        for size in [(224, 224), (97, 300), (512, 384)]:
            with torch.no_grad():
                outs = model(torch.randn(1, 3, *size))
            print(f'  input {size[0]}x{size[1]}: ' + ', '.join(
                f'{tuple(o.shape[1:])}' for o in outs))


if __name__ == '__main__':
    main()
