"""conv3d_cpu: PyTorch-exact 3D convolution on CPU (typed Cython + OpenMP, numpy only)."""
from conv3d_cpu._core.config import show_config
from conv3d_cpu._core.output_cache import get_output_cache_limit, set_output_cache_limit
from conv3d_cpu._core.precision import (float32_precision, get_float32_precision,
                                        set_float32_precision)
from conv3d_cpu._core.weight_cache import get_weight_cache_limit, set_weight_cache_limit
from conv3d_cpu._version import __version__
from conv3d_cpu import grad
from conv3d_cpu.functional import (conv3d, conv3d_backward, conv_transpose3d,
                                   conv_transpose3d_backward)
from conv3d_cpu.modules import Conv3d, ConvTranspose3d

__all__ = ["Conv3d", "ConvTranspose3d", "conv3d", "conv3d_backward", "conv_transpose3d",
           "conv_transpose3d_backward", "grad", "float32_precision", "get_float32_precision",
           "get_output_cache_limit", "get_weight_cache_limit", "set_float32_precision",
           "set_output_cache_limit", "set_weight_cache_limit", "show_config", "__version__"]
