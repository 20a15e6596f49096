"""The model-zoo tables (README.md, and configs/<folder>/README.md for that folder's configs) from
the configs' metafiles, so that they are typed once.

    python tools/analysis_tools/model_zoo.py            # print the table
    python tools/analysis_tools/model_zoo.py --write    # replace the tables in the READMEs

Each row: the config, the published figure it targets with its source and whether that figure was
checked against the source, the protocol it follows, GPUs x images per GPU, precision, and that the
kit has not trained it.
"""
import argparse
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDERS = ('fastervit', 'fastvit')
BEGIN, END = '<!-- model-zoo: tools/analysis_tools/model_zoo.py --write -->', '<!-- /model-zoo -->'


def models(folders=FOLDERS):
    for folder in folders:
        with open(os.path.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
            yield from yaml.safe_load(f)['Models']


def figure(model):
    results = model.get('Results')
    if not results:
        return 'none published', ''
    result = results[0]
    metrics = ', '.join(f'{k} {v}' for k, v in result['Metrics'].items())
    checked = '' if result['Checked'].startswith('checked') else ' (not checked)'
    return f'{metrics}{checked}', result['Source']


def table(folders=FOLDERS, link_prefix: str = '') -> str:
    """The table of the configs of ``folders``; config links are prefixed with ``link_prefix``
    (``'../../'`` from a configs folder's README)."""
    lines = ['| config | published figure | source | protocol | GPUs x batch | precision | '
             'trained here |', '|---|---|---|---|---|---|---|']
    for model in models(folders):
        meta = model['Metadata']
        value, source = figure(model)
        lines.append(f'| [{model["Name"]}]({link_prefix}{model["Config"]}) | {value} | {source} | '
                     f'{meta["Protocol"]} | {meta["GPUs x Batch"]} | {meta["Precision"]} | '
                     f'{"yes" if meta["Trained By This Kit"] else "no"} |')
    return '\n'.join(lines)


def readmes():
    """(path, folders, link prefix) of every README that holds a table."""
    yield os.path.join(ROOT, 'README.md'), FOLDERS, ''
    for folder in FOLDERS:
        yield os.path.join(ROOT, 'configs', folder, 'README.md'), (folder, ), '../../'


def replace_in(text: str, folders=FOLDERS, link_prefix: str = '', name: str = 'README.md') -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f'{name} has no {BEGIN} ... {END} block to fill')
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f'{head}{BEGIN}\n{table(folders, link_prefix)}\n{END}{tail}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--write', action='store_true', help='replace the table in README.md')
    args = parser.parse_args(argv)
    if not args.write:
        print(table())
        return 0
    for path, folders, prefix in readmes():
        with open(path) as f:
            text = f.read()
        try:
            text = replace_in(text, folders, prefix, path)
        except ValueError as error:
            raise SystemExit(str(error)) from None
        with open(path, 'w') as f:
            f.write(text)
        print(f'wrote the model-zoo table into {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
