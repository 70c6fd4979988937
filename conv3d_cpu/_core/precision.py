"""The float32 precision switch: which algorithms ``algorithm='auto'`` may choose for float32.

Like ``torch.set_float32_matmul_precision``, one process-wide value, with a per-thread (and
per-async-context) override:

- ``"high"`` (the default): 'auto' picks the fastest algorithm by the cost model, Winograd
  F(4^3, 3^3), F(2^3, 5^3) and F(5^3, 2^3) included, whose float32 error stays within 1e-4 x max|y| of a
  float64 reference but not always within PyTorch's float32 tolerance (rtol 1.3e-6, atol 1e-5).
- ``"highest"``: 'auto' only picks algorithms that stay within PyTorch's float32 tolerance of a
  float64 reference: direct, F(2^3, 3^3) for 3x3x3, (1,3,3) and (3,1,1) kernels and
  F(3^3, 2^3) for 2x2x2
  (algorithms.ACCURATE_TILES, with the measurements behind it: bench/precision.py).

Explicit algorithms ('direct', 'winograd', 'winograd_f2', 'winograd_f4') and float64 are not
affected. ``set_float32_precision`` is one assignment (atomic under the GIL, seen by every
thread); ``float32_precision(value)`` overrides it in a ``contextvars.ContextVar`` (as numpy's
``errstate`` does), so the override is seen by the current thread or asyncio task only.
``forward.convolve`` reads the value in effect once per call.

Pure Python: nothing here needs the compiled extension.
"""
import contextlib
import contextvars

from conv3d_cpu._core.validation import one_of

PRECISIONS = ("highest", "high")
DEFAULT = "high"

# The process-wide value (set_float32_precision) ...
_global = DEFAULT
# ... and the override of the current thread / async context (float32_precision); None: none.
_override = contextvars.ContextVar("conv3d_cpu_float32_precision", default=None)


def _check(value):
    return one_of("precision", value, PRECISIONS)


def set_float32_precision(precision):
    """Set the process-wide float32 precision of ``algorithm='auto'``.

    Parameters
    ----------
    precision : {'high', 'highest'}
        ``'high'`` (the default): 'auto' may choose Winograd F(4^3, 3^3), F(2^3, 5^3) and
        F(5^3, 2^3), the fastest, whose float32 error stays within 1e-4 x max|y| of a float64
        reference. ``'highest'``: 'auto' chooses only direct convolution and Winograd
        F(2^3, 3^3) (F(3^3, 2^3) for 2x2x2), which stay within PyTorch's float32 tolerance
        (``torch.testing.assert_close`` defaults: rtol 1.3e-6, atol 1e-5) of a float64
        reference.

    Raises
    ------
    ValueError
        ``precision`` is not one of those two strings.

    Notes
    -----
    Seen by every thread that has no ``float32_precision`` override in effect. Explicit
    algorithms (``algorithm='winograd_f4'``, ...) and float64 computations are not affected.
    """
    global _global
    _global = _check(precision)


def get_float32_precision():
    """The float32 precision in effect for the caller.

    Returns
    -------
    str
        ``'high'`` or ``'highest'``: the innermost ``float32_precision`` override of the
        current thread / async context, else the process-wide value
        (``set_float32_precision``; ``'high'`` by default).
    """
    value = _override.get()
    return _global if value is None else value


def float32_precision(precision):
    """Context manager: the float32 precision for the current thread / async context only.

    Parameters
    ----------
    precision : {'high', 'highest'}
        As for ``set_float32_precision``.

    Returns
    -------
    context manager
        Sets ``precision`` on entry (and gives it as the ``as`` target); restores the previous
        value on exit, also when the block raises.

    Raises
    ------
    ValueError
        ``precision`` is not one of those two strings (raised by the call, before the block).

    Notes
    -----
    Overrides nest. Other threads (and other asyncio tasks) keep their own value; the
    process-wide one (``set_float32_precision``) is untouched.

    Examples
    --------
    >>> import conv3d_cpu
    >>> with conv3d_cpu.float32_precision("highest"):
    ...     conv3d_cpu.get_float32_precision()
    'highest'
    """
    return _in_effect(_check(precision))


@contextlib.contextmanager
def _in_effect(value):
    token = _override.set(value)
    try:
        yield value
    finally:
        _override.reset(token)
