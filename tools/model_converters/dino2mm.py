"""Converts NVlabs' FasterViT DINO detector (IDEA-Research DINO layout) into mmdet's DINO.

    python tools/model_converters/dino2mm.py SRC DST [--config CONFIG] [--sha256 HEX]

SRC: ``DINO_4scale_faster_vit_4_21k_224_ms_coco.pth`` as downloaded, its URL
(https://huggingface.co/ahatamiz/FasterViT/resolve/main/DINO_4scale_faster_vit_4_21k_224_ms_coco.pth)
or ``hf-hub:ahatamiz/FasterViT/DINO_4scale_faster_vit_4_21k_224_ms_coco.pth``. Read without
unpickling code; the result fills CONFIG's detector exactly (default:
``configs/fastervit/dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py``) and is written atomically.
"""
import os
import sys

from fastervit_dense.mm.dino_checkpoint import DEFAULT_CONFIG, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == '__main__':
    sys.exit(main(default_config=os.path.join(ROOT, DEFAULT_CONFIG)))
