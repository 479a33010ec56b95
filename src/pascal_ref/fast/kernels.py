"""The Numba kernels of the fast engines: im2col, the QCFS activation, spike scatter, neuron stages.

Plain array loops, compiled once (``cache=True``) and shared by
:mod:`pascal_ref.fast.count`, :mod:`pascal_ref.fast.timestep` and
:mod:`pascal_ref.fast.ann`; why each is exact is said in its docstring and
in :mod:`pascal_ref.fast`.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["im2col_into", "qcfs_levels_int", "qcfs_levels_float", "qcfs_values", "scatter_spikes", "burst_currents",
           "neuron_stages",
           "SCATTER_CONV", "SCATTER_DENSE", "SCATTER_IDENTITY"]

SCATTER_CONV, SCATTER_DENSE, SCATTER_IDENTITY = 0, 1, 2
"""The ``kind`` codes of :func:`scatter_spikes`: where the spike of one op input lands."""


@numba.njit(cache=True)
def im2col_into(x, kh, kw, sh, sw, ph, pw, cols):
    """Channels-last patches of ``x`` ``(B, H, W, C)`` into ``cols`` ``(B*Ho*Wo, kh*kw*C)``.

    Padding is written as zeros in the same pass (no padded copy of ``x``).
    Serial: it runs between two BLAS calls whose threads are still spinning.
    """
    batch, h, w, c = x.shape
    out_h = (h + 2 * ph - kh) // sh + 1
    out_w = (w + 2 * pw - kw) // sw + 1
    r = 0
    for b in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                k = 0
                for ky in range(kh):
                    y = oy * sh - ph + ky
                    for kx in range(kw):
                        xx = ox * sw - pw + kx
                        if 0 <= y < h and 0 <= xx < w:
                            for ch in range(c):
                                cols[r, k + ch] = x[b, y, xx, ch]
                        else:
                            for ch in range(c):
                                cols[r, k + ch] = 0
                        k += c
                r += 1


@numba.njit(cache=True)   # serial: BLAS threads still spin right after the GEMM
def qcfs_levels_int(acc, v0, theta, levels, out):
    """``out[r, c] = clip(floor((acc[r, c] + v0[c]) / theta[c]), 0, levels)`` in int64 (any width)."""
    rows, channels = acc.shape
    for r in range(rows):
        for c in range(channels):
            q = (np.int64(acc[r, c]) + v0[c]) // theta[c]
            out[r, c] = min(max(q, 0), levels)


@numba.njit(cache=True)
def qcfs_levels_float(acc, v0, theta, levels, out):
    """The same in float64, branch-free so that it vectorizes; exact when ``|acc + v0| < 2**52``
    and ``(levels + 1) * theta < 2**52`` (:func:`pascal_ref.fast.plan.count_plan` checks both).

    ``a = acc + v0`` is an exact integer.  ``e = a * fl(1/theta)`` has a relative
    error below ``2**-52``; with ``|a| < 2**52`` that is less than ``1/theta``, the
    smallest distance of a non-integer ``a/theta`` to an integer, so ``floor(e)``
    is the true quotient ``q`` or, when ``a/theta`` is an integer, possibly ``q - 1``.
    After clipping, one exact comparison each way (``q*theta`` and
    ``(q+1)*theta`` are exact integers) settles it.
    """
    rows, channels = acc.shape
    v0f = v0.astype(np.float64)
    thetaf = theta.astype(np.float64)
    inverse = 1.0 / thetaf
    top = float(levels)
    for r in range(rows):
        for c in range(channels):
            a = np.float64(acc[r, c]) + v0f[c]
            q = min(max(np.floor(a * inverse[c]), 0.0), top)
            q = q - 1.0 if (q > 0.0) and (q * thetaf[c] > a) else q
            q = q + 1.0 if (q < top) and ((q + 1.0) * thetaf[c] <= a) else q
            out[r, c] = q


@numba.njit(cache=True)
def qcfs_values(z, bias, constants):
    """In place, in the dtype of ``z``: ``h = clip(floor((z + b) / lam * L + phi), 0, L) * theta``.

    One pass (the numpy expression takes six); the operations and their
    order are those of :func:`pascal_ref.golden.ann.float_ann`.
    """
    lam, levels, phi, theta = constants[0], constants[1], constants[2], constants[3]
    zero = constants[0] - constants[0]
    rows, channels = z.shape
    for r in range(rows):
        for c in range(channels):
            scaled = (z[r, c] + bias[c]) / lam * levels + phi
            z[r, c] = min(max(np.floor(scaled), zero), levels) * theta


@numba.njit(parallel=True, cache=True)
def scatter_spikes(src, source_steps, analog, use_map, map_ptr, map_index, map_mult, kind, weight,
                   op_h, op_w, op_c, geometry, currents, events):
    """Add every burst of ``src`` (counts, or analog values) to the step currents of its targets.

    A source with count ``k`` spikes at steps ``0..k-1``; its weight row is
    added once, at step ``k - 1`` of ``currents[b, t, n]`` (channels-last
    targets), which therefore holds the *differences* ``I[t] - I[t+1]`` of
    the step currents until :func:`burst_currents` sums them from the last
    step back (exact: integers, each partial sum a subset sum of the
    weights, within the layer's bound).  ``events[b]`` receives the number of
    synaptic events of sample ``b`` (one per spike per weight: ``k`` for a
    burst of ``k``).  ``kind``: one of the ``SCATTER_*`` codes (dense 1,
    identity 2, convolution otherwise).
    """
    batch, sources = src.shape
    out_ch = weight.shape[1]
    kh, kw, sh, sw, ph, pw, out_h, out_w = (geometry[0], geometry[1], geometry[2], geometry[3],
                                            geometry[4], geometry[5], geometry[6], geometry[7])
    for b in numba.prange(batch):
        done = 0
        for n in range(sources):
            k = src[b, n]
            if k == 0:
                continue
            if analog:
                steps = 1
                value = k
            else:
                steps = min(k, source_steps)
                value = 1
            lo, hi = (map_ptr[n], map_ptr[n + 1]) if use_map else (0, 1)
            for m in range(lo, hi):
                i = map_index[m] if use_map else n
                gain = value * (map_mult[m] if use_map else 1)
                last = steps - 1
                if kind == 1:      # linear: every output
                    row = currents[b, last]
                    for o in range(out_ch):
                        row[o] += gain * weight[i, o]
                    done += steps * out_ch
                elif kind == 2:    # identity: the same neuron
                    c = i % op_c
                    currents[b, last, i] += gain * weight[0, c]
                    done += steps
                else:              # convolution: the outputs whose window holds input i
                    c = i % op_c
                    x = (i // op_c) % op_w
                    y = i // (op_c * op_w)
                    for ky in range(kh):
                        ny = y + ph - ky
                        if ny < 0 or ny % sh != 0 or ny // sh >= out_h:
                            continue
                        oy = ny // sh
                        for kx in range(kw):
                            nx = x + pw - kx
                            if nx < 0 or nx % sw != 0 or nx // sw >= out_w:
                                continue
                            ox = nx // sw
                            row_w = (ky * kw + kx) * op_c + c
                            base = (oy * out_w + ox) * out_ch
                            row = currents[b, last]
                            for o in range(out_ch):
                                row[base + o] += gain * weight[row_w, o]
                            done += steps * out_ch
        events[b] += done


@numba.njit(parallel=True, cache=True)
def burst_currents(currents):
    """In place: the step currents ``I[t] = sum over t' >= t of D[t']`` from the differences ``D`` that
    :func:`scatter_spikes` leaves (a burst of ``k`` reaches steps ``0..k-1``)."""
    batch, steps, neurons = currents.shape
    for b in numba.prange(batch):
        for t in range(steps - 2, -1, -1):
            row, later = currents[b, t], currents[b, t + 1]
            for n in range(neurons):
                row[n] += later[n]


@numba.njit(parallel=True, cache=True)
def neuron_stages(currents, theta, v0, channels, levels, settle, counts, v_out, c_out):
    """Stages 1-3 of every neuron (channels-last index ``n = p * channels + channel``)."""
    batch, steps, neurons = currents.shape
    pixels = neurons // channels
    for b in numba.prange(batch):
        v = v_out[b]
        c = c_out[b]
        for p in range(pixels):
            for ch in range(channels):
                v[p * channels + ch] = v0[ch]
                c[p * channels + ch] = 0
        for t in range(steps):           # stage 1: integrate; spikes stay inside
            row = currents[b, t]
            for p in range(pixels):
                base = p * channels
                for ch in range(channels):
                    th = theta[ch]
                    value = v[base + ch] + row[base + ch]
                    fire = value >= th
                    v[base + ch] = value - th if fire else value
                    c[base + ch] += 1 if fire else 0
        for p in range(pixels):          # stage 2: settle, excitatory or inhibitory
            for ch in range(channels):
                n = p * channels + ch
                th = theta[ch]
                value = v[n]
                count = c[n]
                for s in range(settle):
                    if value >= th:
                        value -= th
                        count += 1
                    elif value < 0:
                        value += th
                        count -= 1
                    else:
                        break            # stable: later steps change nothing
                v[n] = value
                c[n] = count
                counts[b, n] = min(max(count, 0), levels)   # stage 3: a burst of this length
