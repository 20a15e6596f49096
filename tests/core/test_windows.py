"""Property-based tests of the tensor layout functions over random sizes: round trips are exact."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastervit_dense.models.windows import (carrier_grid_to_windows, carrier_pooling_matrix,
                                           carrier_windows_to_grid, pad_to_window_multiple,
                                           window_partition, window_reverse)

sizes = st.integers(min_value=1, max_value=40)
windows = st.integers(min_value=1, max_value=12)


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 3), channels=st.integers(1, 5), height=sizes, width=sizes, w=windows)
def test_pad_partition_reverse_crop_round_trip(batch, channels, height, width, w):
    x = torch.randn(batch, channels, height, width)
    padded = pad_to_window_multiple(x, w)
    assert padded.shape[-2] % w == 0 and padded.shape[-1] % w == 0
    assert padded.shape[-2] - height < w and padded.shape[-1] - width < w
    assert torch.equal(padded[..., height:, :].abs().sum(), torch.tensor(0.))
    windows_ = window_partition(padded, w)
    n_h, n_w = padded.shape[-2] // w, padded.shape[-1] // w
    assert windows_.shape == (batch * n_h * n_w, w * w, channels)
    # Window (b, i, j) holds the pixels of rows i*w.. and columns j*w.., row-major.
    b, i, j = batch - 1, n_h - 1, n_w - 1
    window = windows_[(b * n_h + i) * n_w + j]
    expected = padded[b, :, i * w:(i + 1) * w, j * w:(j + 1) * w].flatten(1).transpose(0, 1)
    assert torch.equal(window, expected)
    restored = window_reverse(windows_, w, padded.shape[-2], padded.shape[-1])
    assert torch.equal(restored[..., :height, :width], x)


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 3), n_h=st.integers(1, 6), n_w=st.integers(1, 6), ct=st.integers(1, 4),
       channels=st.integers(1, 4))
def test_carrier_grid_window_round_trip(batch, n_h, n_w, ct, channels):
    grid_h, grid_w = n_h * ct, n_w * ct
    tokens = torch.randn(batch, grid_h * grid_w, channels)
    per_window = carrier_grid_to_windows(tokens, grid_h, grid_w, ct)
    assert per_window.shape == (batch * n_h * n_w, ct * ct, channels)
    # A window's carrier tokens are its ct x ct cell of the carrier grid, like its pixels.
    grid = tokens.reshape(batch, grid_h, grid_w, channels)
    b, i, j = batch - 1, n_h - 1, 0
    expected = grid[b, i * ct:(i + 1) * ct, j * ct:(j + 1) * ct].reshape(ct * ct, channels)
    assert torch.equal(per_window[(b * n_h + i) * n_w + j], expected)
    assert torch.equal(carrier_windows_to_grid(per_window, grid_h, grid_w, ct), tokens)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), w=st.integers(2, 14), ct=st.integers(1, 4))
def test_carrier_pooling_matches_average_pooling_with_the_published_kernel(n, w, ct):
    if ct > w:
        return
    length, cells = n * w, n * ct
    stride = w // ct
    kernel = length - (cells - 1) * stride
    x = torch.randn(1, 1, length, 3)
    pooled = carrier_pooling_matrix(n, w, ct, dtype=torch.float64, device='cpu') @ x.double()
    reference = torch.nn.functional.avg_pool2d(x.double(), (kernel, 1), (stride, 1))
    assert pooled.shape == reference.shape == (1, 1, cells, 3)
    torch.testing.assert_close(pooled, reference)
