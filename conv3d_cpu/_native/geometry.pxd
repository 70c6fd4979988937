from conv3d_cpu._native.isa cimport c3_idx


ctypedef struct c3_geom:
    # One convolution layer as every driver sees it. Padding is the front padding per axis;
    # the far side follows from the output's size.
    c3_idx N, C, D, H, W        # batch, input channels, input depth, height, width
    c3_idx O, groups, cpg, opg  # output channels, groups, input / output channels per group
    c3_idx kD, kH, kW           # kernel
    c3_idx oD, oH, oW           # output
    c3_idx sD, sH, sW           # stride
    c3_idx pD, pH, pW           # front padding
    c3_idx dD, dH, dW           # dilation
    int mode                    # padding mode (padding.pxd: C3_PAD_ZEROS, ...)


cdef inline c3_geom geom_of(const Py_ssize_t* x_shape, const Py_ssize_t* out_shape, kernel,
                            stride, padding, dilation, Py_ssize_t groups,
                            int mode=0) except *:
    """The geometry of a layer from its (N, C, D, H, W) input and (N, O, oD, oH, oW) output
    shapes, its per-axis kernel, stride, front padding and dilation (3-sequences) and its
    padding mode (0: zeros)."""
    cdef c3_geom g
    g.N, g.C, g.D, g.H, g.W = x_shape[0], x_shape[1], x_shape[2], x_shape[3], x_shape[4]
    g.O, g.oD, g.oH, g.oW = out_shape[1], out_shape[2], out_shape[3], out_shape[4]
    g.groups, g.cpg, g.opg = groups, g.C // groups, g.O // groups
    g.kD, g.kH, g.kW = kernel
    g.sD, g.sH, g.sW = stride
    g.pD, g.pH, g.pW = padding
    g.dD, g.dH, g.dW = dilation
    g.mode = mode
    return g
