import pytest
import torch
from vbench.backbones.lkca import LKCA, lkca_conv, lkca_matrix, lkca_matrix_of

from vbench import create_backbone


@pytest.mark.parametrize("grid", [4, 8, 16])
def test_views_agree_in_float64_outputs_and_gradients(grid):
    torch.manual_seed(grid)
    values = torch.randn(3, grid * grid, 5, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2 * grid - 1, 2 * grid - 1, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, grid * grid, 5, dtype=torch.float64)

    results = []
    for view in (lkca_conv, lkca_matrix):
        out = view(values, kernel, (grid, grid))
        d_values, d_kernel = torch.autograd.grad(out, (values, kernel), upstream)
        results.append((out, d_values, d_kernel))
    for conv_part, matrix_part in zip(*results):
        assert torch.allclose(conv_part, matrix_part, atol=1e-9, rtol=0)


def test_matrix_rows_are_kernel_windows():
    grid = 3
    kernel = torch.arange(25.0).reshape(5, 5)
    matrix = lkca_matrix_of(kernel, (grid, grid))
    for i in range(grid):
        for j in range(grid):
            window = kernel[grid - 1 - i: 2 * grid - 1 - i, grid - 1 - j: 2 * grid - 1 - j]
            assert torch.equal(matrix[i * grid + j], window.reshape(-1))


def test_views_agree_on_a_grid_larger_than_the_training_grid():
    torch.manual_seed(0)
    values = torch.randn(2, 12 * 10, 4, dtype=torch.float64)
    kernel = torch.randn(15, 15, dtype=torch.float64)
    assert torch.allclose(lkca_conv(values, kernel, (12, 10)), lkca_matrix(values, kernel, (12, 10)), atol=1e-9)


def test_both_views_hold_the_same_parameters_and_weights_move_between_them():
    conv_model = create_backbone("lkca-t", lkca_view="conv").double().eval()
    matrix_model = create_backbone("lkca-t", lkca_view="matrix").double().eval()
    assert {k: v.shape for k, v in conv_model.state_dict().items()} == {
        k: v.shape for k, v in matrix_model.state_dict().items()
    }
    for block in conv_model.blocks:
        torch.nn.init.normal_(block.attn.kernel)
    matrix_model.load_state_dict(conv_model.state_dict())
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert torch.allclose(conv_model(images), matrix_model(images), atol=1e-9)


def test_kernel_starts_at_zero_and_is_one_per_layer():
    model = create_backbone("lkca-b")
    kernels = [block.attn.kernel for block in model.blocks]
    assert len(kernels) == 10
    assert all(k.shape == (15, 15) and not k.any() for k in kernels)


def test_unknown_view_is_a_clear_error():
    from vbench.errors import VbenchError

    with pytest.raises(VbenchError, match="lkca_view"):
        LKCA(8, 4, 2, view="fft")
