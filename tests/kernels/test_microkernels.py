"""Contract tests: each micro-kernel of C3_MICROKERNELS (kernels/kernels.h) against its
contract, under every instruction set this CPU runs and both dtypes.

The kernels are called one at a time through conv3d_cpu._native.microkernels, on random data,
and compared with the formula of their contract computed in float64 by numpy. Kernels that
only move data (store_tile) must match exactly; those that sum must stay within float rounding
of the exact sum, and a tile kernel's result for one position must not depend on how many
positions share its call (the bits of a convolution must not depend on the thread count).
A new micro-kernel gets its test here.
"""
import numpy as np
import pytest

from conv3d_cpu._native import constants, winograd
from conv3d_cpu._native import microkernels as mk
from conv3d_cpu._native.constants import (ROW_UNROLL, WINOGRAD_INPUT_TILES,
                                          WINOGRAD_OUTPUT_TILES)
from isa_helpers import ISAS, isa_selected

DTYPES = [np.float32, np.float64]
F64 = {np.float32: 0, np.float64: 1}


def _close(got, exact, terms, dtype):
    """Within the rounding of a short sum whose |terms| add up to ``terms`` (per element):
    64 units of roundoff of that, far below any wrong coefficient or missing term."""
    eps = np.finfo(dtype).eps
    np.testing.assert_array_less(np.abs(got.astype(np.float64) - exact), 64 * eps * terms + 1e-30)


def test_table_blocking():
    for isa in ISAS:
        with isa_selected(isa):
            t = mk.table()
        assert t["isa"] == isa
        for dt in (0, 1):
            assert t["ocb_wide"][dt] == 2 * t["ocb_narrow"][dt]
        assert t["ocb_narrow"][0] == 2 * t["ocb_narrow"][1]  # float lanes: twice the doubles
        assert 1 <= t["nx_wide"] <= t["nx_narrow"]


# ---- tile_wide, tile_narrow --------------------------------------------------------------

def _tile_case(rng, dtype, ocb, nx, n_rows, kW, dW, sW):
    span = (nx - 1) * sW + (kW - 1) * dW + 1
    rows = rng.standard_normal(n_rows * span + 7).astype(dtype)
    r_off = rng.permutation(n_rows * span + 7 - span + 1)[:n_rows]
    w = rng.standard_normal(n_rows * kW * ocb + 5).astype(dtype)
    w_off = rng.integers(0, w.size - kW * ocb + 1, n_rows)
    return rows, r_off, w, w_off


def _tile_exact(rows, r_off, w, w_off, kW, dW, sW, nx, ocb):
    r, wv = rows.astype(np.float64), w.astype(np.float64)
    exact = np.zeros((nx, ocb))
    terms = np.zeros((nx, ocb))
    for i in range(len(r_off)):
        for e in range(kW):
            x = r[r_off[i] + np.arange(nx) * sW + e * dW]
            k = wv[w_off[i] + e * ocb + np.arange(ocb)]
            exact += np.outer(x, k)
            terms += np.abs(np.outer(x, k))
    return exact, terms


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wide", [True, False], ids=["tile_wide", "tile_narrow"])
def test_tile_contract(wide, dtype, isa):
    rng = np.random.default_rng(1)
    with isa_selected(isa):
        t = mk.table()
        ocb = (t["ocb_wide"] if wide else t["ocb_narrow"])[F64[dtype]]
        nxmax = t["nx_wide"] if wide else t["nx_narrow"]
        for nx in range(1, nxmax + 1):
            for n_rows, kW, dW, sW in [(1, 1, 1, 1), (5, 3, 1, 1), (3, 2, 2, 2), (4, 3, 2, 3)]:
                rows, r_off, w, w_off = _tile_case(rng, dtype, ocb, nx, n_rows, kW, dW, sW)
                got = mk.tile(wide, rows, r_off, w, w_off, kW, dW, sW, nx)
                exact, terms = _tile_exact(rows, r_off, w, w_off, kW, dW, sW, nx, ocb)
                _close(got, exact, terms, dtype)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wide", [True, False], ids=["tile_wide", "tile_narrow"])
def test_tile_position_bits_independent_of_nx(wide, dtype, isa):
    # Position j of a call of nx positions == position 0 of a call starting at j: the sum's
    # order (rows, then taps) is the same whatever the tile width.
    rng = np.random.default_rng(2)
    n_rows, kW, dW, sW = 6, 3, 1, 2
    with isa_selected(isa):
        t = mk.table()
        ocb = (t["ocb_wide"] if wide else t["ocb_narrow"])[F64[dtype]]
        nx = t["nx_wide"] if wide else t["nx_narrow"]
        rows, r_off, w, w_off = _tile_case(rng, dtype, ocb, nx, n_rows, kW, dW, sW)
        full = mk.tile(wide, rows, r_off, w, w_off, kW, dW, sW, nx)
        for j in range(nx):
            one = mk.tile(wide, rows, r_off + j * sW, w, w_off, kW, dW, sW, 1)
            np.testing.assert_array_equal(one[0], full[j])


# ---- store_tile ---------------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_store_tile_contract(dtype, isa):
    rng = np.random.default_rng(3)
    with isa_selected(isa):
        t = mk.table()
        for ocb in (t["ocb_narrow"][F64[dtype]], t["ocb_wide"][F64[dtype]]):
            for nx in range(1, t["nx_narrow"] + 1):
                for nvalid in sorted({1, ocb // 2 + 1, ocb}):
                    plane = nx + 3
                    tile = rng.standard_normal(nx * ocb).astype(dtype)
                    bias = rng.standard_normal(ocb).astype(dtype)
                    out = np.full(ocb * plane, 7.0, dtype)
                    mk.store_tile(tile, ocb, nx, out, plane, bias, nvalid)
                    expected = np.full((ocb, plane), 7.0, dtype)
                    expected[:nvalid, :nx] = (tile.reshape(nx, ocb) + bias).T[:nvalid]
                    np.testing.assert_array_equal(out.reshape(ocb, plane), expected)


# ---- row ----------------------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_contract(dtype, isa):
    rng = np.random.default_rng(4)
    with isa_selected(isa):
        step = ROW_UNROLL * mk.table()["ocb_narrow"][F64[dtype]]
        for oW in (1, 3, step - 1, step, step + 1, 2 * step + 5):
            for n_rows, kW, dW, sW in [(1, 1, 1, 1), (4, 3, 1, 1), (3, 3, 2, 1), (5, 2, 1, 2),
                                       (9, 3, 1, 2), (2, 3, 2, 2), (2, 3, 2, 3)]:
                # sW 1 and 2: whole vectors past the row end (kernels.h)
                reach = (sW * (-(-oW // step) * step) if sW <= 2 else (oW - 1) * sW + 1) \
                    + (kW - 1) * dW
                rows = rng.standard_normal(n_rows * reach + 3).astype(dtype)
                r_off = np.arange(n_rows) * reach + rng.integers(0, 4, n_rows) % 4
                r_off = np.minimum(r_off, rows.size - reach)
                w = rng.standard_normal(n_rows * kW + 2).astype(dtype)
                w_off = rng.integers(0, w.size - kW + 1, n_rows)
                bias = dtype(rng.standard_normal())
                got = mk.row(rows, r_off, w, w_off, kW, dW, sW, oW, bias)
                r, wv = rows.astype(np.float64), w.astype(np.float64)
                exact, terms = np.full(oW, float(bias)), np.full(oW, abs(float(bias)))
                for i in range(n_rows):
                    for e in range(kW):
                        p = wv[w_off[i] + e] * r[r_off[i] + np.arange(oW) * sW + e * dW]
                        exact += p
                        terms += np.abs(p)
                _close(got, exact, terms, dtype)


# ---- transpose_block ------------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_block_contract(dtype, isa):
    rng = np.random.default_rng(9)
    with isa_selected(isa):
        lanes = mk.table()["ocb_narrow"][F64[dtype]]
        for n_i, n_j in [(1, 1), (lanes, lanes), (3 * lanes + 1, 2 * lanes - 1), (5, 37)]:
            src_stride, dst_stride = n_j + 3, n_i + 2
            src = rng.standard_normal(n_i * src_stride).astype(dtype)
            dst = mk.transpose_block(src, src_stride, dst_stride, n_i, n_j)
            expected = np.zeros((n_j, dst_stride), dtype)
            expected[:, :n_i] = src.reshape(n_i, src_stride)[:, :n_j].T
            np.testing.assert_array_equal(dst.reshape(n_j, dst_stride), expected)


# ---- wino_input, wino_output ----------------------------------------------------------------

# B^T and A^T of winograd_tmpl.h, by transformed points A and outputs m per axis.
BT = {
    1: np.eye(1),
    4: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]], float),
    6: np.array([[1, 0, -5, 0, 4, 0], [0, -1, -1, 4, 4, 0], [0, 1, -1, -4, 4, 0],
                 [0, -1, -2, 1, 2, 0], [0, 1, -2, -1, 2, 0], [0, 1, 0, -5, 0, 4]], float),
}
AT = {
    (1, 1): np.eye(1),
    (2, 4): np.array([[1, 1, 1, 0], [0, 1, -1, 1]], float),
    (4, 6): np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, .5, -.5, 0], [0, 1, 1, .25, .25, 0],
                      [0, 1, -1, .125, -.125, 1]]),
    (2, 6): np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, .5, -.5, 1]]),
    (3, 4): np.array([[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]], float),
    (5, 6): np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, .5, -.5, 0], [0, 1, 1, .25, .25, 0],
                      [0, 1, -1, .125, -.125, 0], [0, 1, 1, .0625, .0625, 1]]),
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a", WINOGRAD_INPUT_TILES, ids=str)
def test_wino_input_contract(a, dtype, isa):
    rng = np.random.default_rng(5)
    m = (1, 1, 1)  # (the input transform reads only a)
    D, H, W = 9, 8, 13
    with isa_selected(isa):
        lanes = mk.table()["ocb_narrow"][F64[dtype]]
        for nc in sorted({1, lanes // 2 + 1, lanes}):
            x = rng.standard_normal((nc, D, H, W)).astype(dtype)
            # origins inside, across every edge and far outside the input
            for z0, y0, x0 in [(0, 0, 0), (-1, -2, -1), (D - a[0] + 1, H - 2, W - a[2] + 2),
                               (2, 1, 3), (-a[0], 0, 0), (3, 2, W)]:
                v, rc = mk.wino_input(m, a, x.reshape(-1), D * H * W, nc, D, H, W, z0, y0, x0,
                                      lanes + 1)
                assert rc == 0
                patch = np.zeros((nc,) + a)
                for i in np.ndindex(*a):
                    z, y, w_ = z0 + i[0], y0 + i[1], x0 + i[2]
                    if 0 <= z < D and 0 <= y < H and 0 <= w_ < W:
                        patch[(slice(None),) + i] = x[:, z, y, w_]
                exact = np.einsum("ka,lb,mc,nabc->klmn", BT[a[0]], BT[a[1]], BT[a[2]], patch)
                terms = np.einsum("ka,lb,mc,nabc->klmn", *(np.abs(BT[d]) for d in a),
                                  np.abs(patch))
                got = v[:, :nc].reshape(a + (nc,))
                _close(got, exact, terms, dtype)
                assert not v[:, nc:].any()  # lanes past nc and the stride's slack untouched


NP_PAD = {1: "reflect", 2: "edge", 3: "wrap"}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", [1, 2, 3], ids=["reflect", "replicate", "circular"])
@pytest.mark.parametrize("a", WINOGRAD_INPUT_TILES, ids=str)
def test_wino_input_padding_modes(a, mode, isa):
    # The patch read from the input padded by (lo, hi) in the mode, zero past that padding.
    rng = np.random.default_rng(11)
    D, H, W = 7, 6, 9
    lo, hi = (2, 1, 3), (1, 2, 2)
    x = rng.standard_normal((8, D, H, W)).astype(np.float32)
    padded = np.pad(x, [(0, 0)] + list(zip(lo, hi)), mode=NP_PAD[mode])
    with isa_selected(isa):
        lanes = mk.table()["ocb_narrow"][0]
        nc = min(lanes, 8)
        for z0, y0, x0 in [(-2, -1, -3), (-3, -2, -4), (D - 2, H - 3, W - 4), (1, 1, 1),
                           (0, -1, W - 5), (-1, 0, 2)]:
            v, rc = mk.wino_input((1, 1, 1), a, x.reshape(-1), D * H * W, nc, D, H, W, z0, y0,
                                  x0, lanes + 1, mode, lo, hi)
            assert rc == 0
            patch = np.zeros((nc,) + a)
            for i in np.ndindex(*a):
                q = (z0 + i[0] + lo[0], y0 + i[1] + lo[1], x0 + i[2] + lo[2])
                if all(0 <= qq < n for qq, n in zip(q, padded.shape[1:])):
                    patch[(slice(None),) + i] = padded[(slice(0, nc),) + q]
            exact = np.einsum("ka,lb,mc,nabc->klmn", BT[a[0]], BT[a[1]], BT[a[2]], patch)
            terms = np.einsum("ka,lb,mc,nabc->klmn", *(np.abs(BT[d]) for d in a), np.abs(patch))
            _close(v[:, :nc].reshape(a + (nc,)), exact, terms, np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile", WINOGRAD_OUTPUT_TILES, ids=str)
def test_wino_output_contract(tile, dtype, isa):
    rng = np.random.default_rng(6)
    m, a = tile[:3], tile[3:]
    A = int(np.prod(a))
    with isa_selected(isa):
        lanes = mk.table()["ocb_narrow"][F64[dtype]]
        for nc in sorted({1, lanes // 2 + 1, lanes}):
            for cut in [m, tuple(max(1, d - 1) for d in m)]:
                oH, oW = m[1] + 2, m[2] + 3
                ostride = (m[0] + 1) * oH * oW
                mstride = lanes + 3
                m_in = rng.standard_normal(A * mstride).astype(dtype)
                bias = rng.standard_normal(nc).astype(dtype)
                out = np.full(nc * ostride, 5.0, dtype)
                rc = mk.wino_output(m, a, m_in, mstride, nc, bias, out, ostride, oH, oW, *cut)
                assert rc == 0
                M = m_in.astype(np.float64).reshape(A, mstride)[:, :nc].reshape(a + (nc,))
                ats = [AT[md, ad] for md, ad in zip(m, a)]
                exact = np.einsum("zk,yl,xm,klmn->nzyx", *ats, M) + bias[:, None, None, None]
                terms = np.einsum("zk,yl,xm,klmn->nzyx", *(np.abs(t) for t in ats), np.abs(M))
                expected = np.full((nc, m[0] + 1, oH, oW), 5.0)
                got = out.reshape(nc, m[0] + 1, oH, oW)
                ez, ey, ex = cut
                _close(got[:, :ez, :ey, :ex], exact[:, :ez, :ey, :ex],
                       terms[:, :ez, :ey, :ex] + np.abs(bias)[:, None, None, None], dtype)
                expected[:, :ez, :ey, :ex] = got[:, :ez, :ey, :ex]
                np.testing.assert_array_equal(got, expected)  # nothing else written
            # a NaN or an infinity in the tile is reported
            m_in[mstride * (A // 2)] = np.inf
            assert mk.wino_output(m, a, m_in, mstride, nc, bias, out, ostride, oH, oW, *m) == 1


# G's numerators and denominators (kernels/winograd_g.h), by (m, r).
G = {
    (1, 1): (np.eye(1), 1),
    (2, 3): (np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], float), 2),
    (4, 3): (np.array([[24, 0, 0], [4, 4, 4], [4, -4, 4], [-32, -16, -8], [-32, 16, -8],
                       [0, 0, 6]], float), 24),
    (2, 5): (np.array([[96, 0, 0, 0, 0], [16, 16, 16, 16, 16], [16, -16, 16, -16, 16],
                       [-128, -64, -32, -16, -8], [-128, 64, -32, 16, -8], [0, 0, 0, 0, 24]],
                      float), 96),
    (3, 2): (np.array([[2, 0], [1, 1], [1, -1], [0, 2]], float), 2),
    (5, 2): (np.array([[12, 0], [2, 2], [2, -2], [-16, -8], [-16, 8], [0, 3]], float), 12),
}
WEIGHT_TILES = sorted({constants.winograd_tile(m, k) + (k,)
                       for k, ms in constants.WINOGRAD_SHAPES.items() for m in ms})


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", WEIGHT_TILES, ids=str)
def test_wino_weights_contract(case, dtype, isa):
    # U = (Gz x Gy x Gx) g / (dz dy dx) per (output, input) channel pair, against the same in
    # numpy's long double: float32 results correctly rounded (to within the reciprocal's
    # rounding), float64 within rounding of the sum.
    m, kernel = case[:3], case[3]
    a = constants.winograd_points(m, kernel)
    A = int(np.prod(a))
    rng = np.random.default_rng(7)
    with isa_selected(isa):
        ocb = mk.table()["ocb_wide"][F64[dtype]]
        for cpg, nvalid in [(1, 1), (3, ocb // 2 + 1), (11, ocb)]:  # past one channel block
            w = (rng.standard_normal((nvalid, cpg) + kernel)
                 * np.exp(rng.uniform(-2, 2, (nvalid, cpg) + kernel))).astype(dtype)
            u_stride = cpg * ocb + 5
            u, rc = mk.wino_weights(m, a, w.reshape(-1), cpg * int(np.prod(kernel)), nvalid,
                                    cpg, u_stride, ocb)
            assert rc == 0
            (Gz, dz), (Gy, dy), (Gx, dx) = (G[md, k] for md, k in zip(m, kernel))
            ld = np.longdouble
            exact = np.einsum("ia,jb,kd,onabd->ijkno", Gz.astype(ld), Gy.astype(ld),
                              Gx.astype(ld), w.astype(ld)).reshape(A, cpg, nvalid)
            exact /= ld(dz * dy * dx)
            terms = np.einsum("ia,jb,kd,onabd->ijkno", np.abs(Gz), np.abs(Gy), np.abs(Gx),
                              np.abs(w.astype(float))).reshape(A, cpg, nvalid) / (dz * dy * dx)
            got = u[:, :cpg * ocb].reshape(A, cpg, ocb)
            assert not got[:, :, nvalid:].any()  # channels past nvalid are zero
            assert not u[:, cpg * ocb:].any()    # nothing past the block
            err = np.abs(got[:, :, :nvalid].astype(ld) - exact)
            if dtype == np.float32:
                ulp = np.spacing(np.abs(exact.astype(np.float32))).astype(ld)
                assert (err <= 0.5 * ulp + 1e-3 * ulp).all()
            else:
                assert (err <= 4 * np.finfo(np.float64).eps * terms).all()


def test_wino_weights_bits_same_under_every_isa():
    # Plain IEEE double products and sums: the transform is the same whatever the vectors.
    rng = np.random.default_rng(8)
    w = rng.standard_normal((16, 5, 3, 3, 3)).astype(np.float32)
    results = []
    for isa in ISAS:
        with isa_selected(isa):
            results.append(winograd.transform_weights(w, 1, (4, 4, 4), 1).reshape(216, -1))
    # (channel blocks differ in width between ISAs: compare the per-channel values)
    per_channel = []
    for isa, u in zip(ISAS, results):
        with isa_selected(isa):
            ocb, _ = winograd.channel_block(np.float32, 5, 16)
        per_channel.append(u.reshape(216, -1, 5, ocb).transpose(0, 1, 3, 2).reshape(216, -1, 5)
                           [:, :16])
    for u in per_channel[1:]:
        np.testing.assert_array_equal(u, per_channel[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_wino_transforms_refuse_tiles_not_compiled(dtype):
    x = np.ones(1000, dtype)
    v, rc = mk.wino_input((3, 3, 3), (5, 5, 5), x, 100, 1, 4, 5, 5, 0, 0, 0, 4)
    assert rc == -1 and not v.any()
    m_in = np.ones(125 * 16, dtype)
    out = np.zeros(100, dtype)
    assert mk.wino_output((3, 3, 3), (5, 5, 5), m_in, 16, 1, np.zeros(1, dtype), out, 27, 3, 3,
                          3, 3, 3) == -1
    assert not out.any()
    u, rc = mk.wino_weights((3, 3, 3), (7, 7, 7), np.ones(125, dtype), 125, 1, 1, 16, 16)
    assert rc == -1 and not u.any()  # F(3, 5) has no G


# ---- fma_chains (the peak probe) ---------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_fma_chains_contract(dtype, isa):
    # acc * a + b, iters times, on every lane of every chain; a = 1 and b = 1/4 keep the
    # values exact, a = 1/2 and b = 1 converge to 2 from any start
    rng = np.random.default_rng(0)
    with isa_selected(isa):
        lanes = mk.table()["ocb_narrow"][F64[dtype]]
        acc = rng.integers(-50, 50, constants.FMA_CHAINS * lanes).astype(dtype)
        for iters in (0, 1, 7, 1000):
            got = mk.fma_chains(acc, np.array([1, 0.25], dtype), iters)
            assert np.array_equal(got, acc + np.asarray(0.25 * iters, dtype)), (iters, got)
        got = mk.fma_chains(acc, np.array([0.5, 1], dtype), 200)
        assert np.array_equal(got, np.full_like(acc, 2)), got
        with pytest.raises(ValueError):
            mk.fma_chains(acc[:-1], np.array([1, 0], dtype), 1)


def test_fma_peak_gflops_is_a_rate():
    from conv3d_cpu._native import isa as _isa

    for f64 in (False, True):
        rate = _isa.fma_peak_gflops(f64, seconds=0.005)
        assert np.isfinite(rate) and rate > 0.1, rate
