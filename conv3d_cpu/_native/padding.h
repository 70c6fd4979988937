/* Where a padded index reads from, for the padding modes of constants.PADDING_MODES (PyTorch's
 * meaning): the index itself inside [0, n), else its reflection (reflect: pad < n), the edge
 * (replicate) or its wrap (circular: pad <= n); -1 for zeros (implicit zeros: the caller
 * skips or leaves zero). Used by the gather (gather.pxd) and the Winograd input transform. */
#ifndef CONV3D_CPU_PADDING_H
#define CONV3D_CPU_PADDING_H
#include <stddef.h>

#include "constants.h"

static inline ptrdiff_t c3_pad_index(ptrdiff_t i, ptrdiff_t n, int mode) {
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case C3_PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case C3_PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    case C3_PAD_CIRCULAR: return i < 0 ? i + n : i - n;
    default: return -1;
    }
}
#endif
