"""Converts a FastViT checkpoint (Apple's fused or unfused file, timm's .pth/.bin/.safetensors,
or a MobileCLIP image encoder) into the kit's backbone format.

    python tools/model_converters/fastvit2mm.py SRC DST [--arch ARCH]
"""
import sys

from fastervit_dense.converters import converter_main

if __name__ == '__main__':
    sys.exit(converter_main('fastvit', description=__doc__.split('\n')[0]))
