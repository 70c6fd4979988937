# The constants of constants.py, as C compiles them (constants.h, generated from it).
cdef extern from "constants.h" nogil:
    enum:
        C3_ROW_UNROLL
        C3_MAX_FLOAT_LANES
        C3_ROW_OVERREAD
        C3_ITEMS_PER_THREAD
        C3_SLAB_BYTES
        C3_POINTWISE_TILES
        C3_MIN_TILE_BLOCK
        C3_WORKSPACE_SLACK
        C3_WINOGRAD_WEIGHT_CHANNELS
        C3_MAX_RANGES
        C3_WINOGRAD_MAX_ALPHA
        C3_INTERRUPT_POLL_MS
        C3_SUM_TERMS
    const char* C3_CONSTANTS_DIGEST
