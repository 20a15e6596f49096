"""Parameters and FLOPs of a config's model (backbone, neck and heads) at a given input shape.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

FLOPs are mmengine's count (multiply-accumulates) of one forward of ``model._forward`` on a random
image; the backbone's fused attention is counted too.
"""
import argparse

import torch
from mmengine.config import DictAction

from fastervit_dense.mm.runner import build_model, load_config, run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 512], help='H [W]')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    height, width = (args.shape * 2)[:2]
    cfg = load_config(args.config, args.cfg_options)
    from mmengine.analysis import parameter_count
    from mmengine.model import revert_sync_batchnorm

    from fastervit_dense.mm.flops import count_macs
    model = revert_sync_batchnorm(build_model(cfg)).eval()

    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                batch_input_shape=(height, width), scale_factor=(1.0, 1.0))
    if cfg.default_scope == 'mmdet':
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=meta)]
    else:
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=meta)]

    class Forward(torch.nn.Module):
        """The tensor-only forward of the model (heads included), for tracing."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model._forward(x, samples)

    flops = count_macs(Forward(model), (torch.randn(1, 3, height, width), ))
    params = parameter_count(model)['']
    split = '=' * 40
    print(f'{split}\nConfig: {args.config}\nInput shape: (3, {height}, {width})\n'
          f'Flops: {flops / 1e9:.2f} GFLOPs (multiply-accumulates)\nParams: {params / 1e6:.2f} M\n'
          f'{split}')


if __name__ == '__main__':
    run_tool(main)
