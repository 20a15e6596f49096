"""Converts NVlabs' FasterViT DINO detector (IDEA-Research DINO layout) into mmdet's DINO.

    python tools/model_converters/dino2mm.py SRC DST [--config CONFIG] [--sha256 HEX]

SRC: ``DINO_4scale_faster_vit_4_21k_224_ms_coco.pth`` as downloaded, its URL
(https://huggingface.co/ahatamiz/FasterViT/resolve/main/DINO_4scale_faster_vit_4_21k_224_ms_coco.pth)
or ``hf-hub:ahatamiz/FasterViT/DINO_4scale_faster_vit_4_21k_224_ms_coco.pth``. Read without
unpickling code; the result fills CONFIG's detector exactly (default:
``configs/fastervit/dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py``) and is written atomically.
"""
import argparse
import os
import sys

from fastervit_dense.converters import CONVERSION_ERRORS
from fastervit_dense.mm.dino_checkpoint import convert_dino_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join('configs', 'fastervit',
                              'dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='the checkpoint: a local file as downloaded, an http(s) URL or '
                        'an hf-hub:OWNER/REPO/FILENAME id')
    parser.add_argument('dst', help='output file (written atomically)')
    parser.add_argument('--config', default=os.path.join(ROOT, DEFAULT_CONFIG),
                        help=f'the mmdet config the weights must fill (default: {DEFAULT_CONFIG})')
    parser.add_argument('--sha256', default=None, help='expected SHA-256 of the source file')
    args = parser.parse_args(argv)
    try:
        meta = convert_dino_file(args.src, args.dst, args.config, sha256=args.sha256)
    except CONVERSION_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(f'wrote {args.dst}: DINO weights for {args.config} (source sha256 '
          f'{meta["source_sha256"][:12]}); evaluate with mmdet\'s tools/test.py {args.config} '
          f'{args.dst}, or fine-tune with load_from={args.dst!r}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
