"""The README and docs/ lead somewhere: every relative link resolves, every document of docs/ is
linked from the README, and the README stays the short path it is meant to be."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCUMENTS = ['README.md', *sorted(os.path.relpath(p, ROOT) for p in glob.glob(
    os.path.join(ROOT, 'docs', '*.md'))), 'configs/fastervit/README.md', 'configs/fastvit/README.md']


def links(path):
    text = open(os.path.join(ROOT, path)).read()
    return [t for t in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text)
            if not t.startswith(('http://', 'https://'))]


def test_every_relative_link_resolves():
    broken = [(path, target) for path in DOCUMENTS for target in links(path)
              if not os.path.exists(os.path.join(ROOT, os.path.dirname(path), target))]
    assert broken == []


def test_the_readme_links_every_document_and_stays_short():
    linked = set(links('README.md'))
    assert {p for p in DOCUMENTS if p.startswith('docs/')} <= linked
    assert len(open(os.path.join(ROOT, 'README.md')).read().splitlines()) <= 220
