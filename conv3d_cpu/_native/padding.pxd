# padding.h: where a padded index reads from, per padding mode (-1 for zeros).
cdef extern from "padding.h" nogil:
    enum:
        C3_PAD_ZEROS
        C3_PAD_REFLECT
        C3_PAD_REPLICATE
        C3_PAD_CIRCULAR
    Py_ssize_t c3_pad_index(Py_ssize_t i, Py_ssize_t n, int mode)
