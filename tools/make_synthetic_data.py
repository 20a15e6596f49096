"""Writes the kit's small deterministic shape datasets (COCO instances and ADE20K-layout semantic
segmentation) for demos and end-to-end tests.

    python tools/make_synthetic_data.py [--root data/synthetic] [--train 120] [--val 30] [--seed 0]
"""
import argparse

from fastervit_dense.mm.synthetic import make_datasets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default='data/synthetic')
    parser.add_argument('--train', type=int, default=120, help='training images per dataset')
    parser.add_argument('--val', type=int, default=30, help='validation images per dataset')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--min-size', type=int, default=160)
    parser.add_argument('--max-size', type=int, default=320)
    args = parser.parse_args(argv)
    paths = make_datasets(args.root, args.train, args.val, args.seed, (args.min_size, args.max_size))
    print(f'instances: {paths["instances"]["train"]}, {paths["instances"]["val"]}')
    print(f'semantic:  {paths["semantic"]}')


if __name__ == '__main__':
    main()
