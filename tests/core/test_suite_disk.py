"""The suite's own disk use: what a test leaves under its ``tmp_path`` (tests/conftest.py)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytest_plugins = ['pytester']


def test_large_files_a_test_leaves_are_deleted_when_it_ends(pytester):
    pytester.makeconftest(open(os.path.join(ROOT, 'tests', 'conftest.py')).read())
    record = pytester.path / 'record.txt'
    pytester.makepyfile(f'''
        def test_writes(tmp_path):
            (tmp_path / 'model.onnx').write_bytes(b'0' * (17 * 2**20))
            (tmp_path / 'small.json').write_text('{{}}')
            open({str(record)!r}, 'w').write(str(tmp_path))

        def test_after(tmp_path):
            import os
            folder = open({str(record)!r}).read()
            assert not os.path.exists(os.path.join(folder, 'model.onnx'))
            assert os.path.exists(os.path.join(folder, 'small.json'))
    ''')
    pytester.runpytest('-p', 'no:cacheprovider').assert_outcomes(passed=2)
