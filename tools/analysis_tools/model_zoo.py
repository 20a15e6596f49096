"""The model-zoo table (README.md) from the configs' metafiles, so that it is typed once.

    python tools/analysis_tools/model_zoo.py            # print the table
    python tools/analysis_tools/model_zoo.py --write    # replace it in README.md

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


def models():
    for folder in FOLDERS:
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


def table() -> str:
    lines = ['| config | published figure | source | protocol | GPUs x batch | precision | '
             'trained here |', '|---|---|---|---|---|---|---|']
    for model in models():
        meta = model['Metadata']
        value, source = figure(model)
        lines.append(f'| [{model["Name"]}]({model["Config"]}) | {value} | {source} | '
                     f'{meta["Protocol"]} | {meta["GPUs x Batch"]} | {meta["Precision"]} | '
                     f'{"yes" if meta["Trained By This Kit"] else "no"} |')
    return '\n'.join(lines)


def replace_in(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f'README.md has no {BEGIN} ... {END} block to fill')
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f'{head}{BEGIN}\n{table()}\n{END}{tail}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--write', action='store_true', help='replace the table in README.md')
    args = parser.parse_args(argv)
    if not args.write:
        print(table())
        return 0
    path = os.path.join(ROOT, 'README.md')
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write(replace_in(text))
    print(f'wrote the model-zoo table into {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
