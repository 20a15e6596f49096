"""Converts a published FasterViT ImageNet checkpoint into the kit's backbone format.

    python tools/model_converters/fastervit2mm.py SRC DST [--arch ARCH] [--ema]

Accepts the official files as downloaded (a training checkpoint with ``state_dict``, ``args``,
optimizer state), plain state dicts and ``module.``-prefixed ones. Keeps the backbone weights, drops
the classifier and every recomputable buffer, and writes ``{'state_dict', 'meta'}`` atomically.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_backbone import main  # noqa: E402 (the shared command line beside this file)

if __name__ == '__main__':
    sys.exit(main('fastervit', description=__doc__.split('\n')[0]))
