"""Image sizes as the command lines take them: ``HxW`` (``576x960``), lists ``HxW,HxW``."""
from typing import List, Tuple

__all__ = ['parse_size', 'parse_sizes']


def parse_size(text: str) -> Tuple[int, int]:
    """``'576x960'`` -> ``(576, 960)``; a ValueError naming the expected form otherwise (an
    argparse ``type=`` turns it into a usage error)."""
    try:
        height, width = (int(v) for v in str(text).lower().split('x'))
    except ValueError:
        raise ValueError(f'bad size {text!r}: expected HxW, e.g. 576x960') from None
    if height <= 0 or width <= 0:
        raise ValueError(f'bad size {text!r}: height and width must be positive')
    return height, width


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """``'320x480,97x300'`` -> ``[(320, 480), (97, 300)]``; ``''`` -> ``[]``."""
    try:
        return [parse_size(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise ValueError(f'sizes {text!r}: give sizes as HxW[,HxW...], e.g. 320x480,333x517') \
            from None
