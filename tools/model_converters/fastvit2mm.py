"""Converts a FastViT checkpoint (Apple's fused or unfused file, timm's .pth/.bin/.safetensors,
or a MobileCLIP image encoder) into the kit's backbone format.

    python tools/model_converters/fastvit2mm.py SRC DST [--arch ARCH]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_backbone import main  # noqa: E402 (the shared command line beside this file)

if __name__ == '__main__':
    sys.exit(main('fastvit', description=__doc__.split('\n')[0]))
