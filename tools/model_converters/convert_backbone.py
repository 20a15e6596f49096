"""Converts a published backbone checkpoint (FasterViT or FastViT) into the kit's backbone format.

    python tools/model_converters/convert_backbone.py --kind fastervit|fastvit SRC DST
        [--arch ARCH] [--sha256 HEX] [--ema]

``fastervit2mm.py`` and ``fastvit2mm.py`` are this command with the kind fixed. SRC is a local file
as downloaded, an http(s) URL or an ``hf-hub:OWNER/REPO[/FILENAME]`` id; it is read without
unpickling code, and DST is written atomically (a failed conversion leaves none).
"""
import argparse
import sys
from typing import Optional

from fastervit_dense.converters import CONVERSION_ERRORS, convert_file, describe_conversion
from fastervit_dense.models import BACKBONES


def main(kind: Optional[str] = None, argv=None, description: str = '') -> int:
    """The converters' command line; ``kind=None`` adds a ``--kind`` argument."""
    parser = argparse.ArgumentParser(description=description or __doc__.split('\n')[0])
    if kind is None:
        parser.add_argument('--kind', choices=sorted(BACKBONES), required=True)
    parser.add_argument('src', help='published checkpoint: a local file as downloaded, an http(s) '
                        'URL or an hf-hub:OWNER/REPO[/FILENAME] id')
    parser.add_argument('dst', help='output file for the kit (written atomically)')
    parser.add_argument('--arch', default=None, help='variant; inferred from the weights if omitted')
    parser.add_argument('--sha256', default=None, help='expected SHA-256 of the source file')
    if kind in (None, 'fastervit'):
        parser.add_argument('--ema', action='store_true', help='take the EMA weights')
    args = parser.parse_args(argv)
    kind = kind or args.kind
    try:
        meta = convert_file(args.src, args.dst, kind, args.arch, getattr(args, 'ema', False),
                            sha256=args.sha256)
    except CONVERSION_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(describe_conversion(meta, args.dst, arch_given=bool(args.arch)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
