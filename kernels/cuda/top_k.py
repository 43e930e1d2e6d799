"""Top-k of one row of logits on the device: twin of kernels.sampling.top_k_select (sorted).

Radix select on a composite key, then one block sorts the k survivors. The key is the float's
bits made order-preserving (32 bits), then (ID_MAX - id) over the id's bytes, so every key is
distinct and "larger key" is exactly the CPU order: value descending, ties -> lower id.
Each pass histograms one 8-bit digit of the entries matching the digits chosen so far, and
every block of the next pass derives from that histogram the digit holding the k-th largest
key; once the chosen bucket holds exactly the count still missing, the remaining passes
return at once. The entries whose key is at least the chosen prefix are then exactly the k
best. Passes: 4 + bytes of an id, i.e. 7 for 262,144 logits (most return at once for logits
without ties); each reads the row once, coalesced, counting in shared memory first.
Only integers are compared (fast math cannot touch them); -0.0 counts as +0.0, as on the CPU.
"""

import numpy as np
from numba import cuda

from kernels._jit import cuda_device, cuda_kernel
from kernels.cuda import launch
from kernels.cuda.launch import THREADS

TOP_K_MAX = 1024  # candidates one block sorts in shared memory
BINS = 256  # one 8-bit digit per radix pass
MAX_PASSES = 8  # 4 value bytes + up to 4 id bytes
_SIGN = 0x80000000
_MASK32 = 0xFFFFFFFF


@cuda_device
def _vkey(u):
    """Order-preserving key of float32 bits u (uint32): larger float -> larger key; -0.0 as +0.0."""
    x = np.int64(u)
    if x == _SIGN:
        x = 0
    if x >= _SIGN:  # negative: more negative floats have larger bits, so flip them all
        return _MASK32 - x
    return x + _SIGN


@cuda_device
def _digit(vk, ik, q, nb):
    """Digit q (0 = most significant) of the composite key (vk: 4 bytes, ik: nb bytes)."""
    if q < 4:
        return (vk >> (24 - 8 * q)) & 255
    return (ik >> (8 * (nb - 1 - (q - 4)))) & 255


@cuda_device
def _cmp(vk, ik, vp, ip, lv, nb):
    """Sign of (first lv digits of the key (vk, ik)) - (first lv digits of the prefix (vp, ip))."""
    if lv <= 4:
        a = vk >> (32 - 8 * lv)
        b = vp >> (32 - 8 * lv)
    else:
        if vk != vp:
            return 1 if vk > vp else -1
        a = ik >> (8 * (nb - (lv - 4)))
        b = ip >> (8 * (nb - (lv - 4)))
    return 1 if a > b else (0 if a == b else -1)


@cuda_device
def _resolve(stv, st, hist, p, nb, sa, sb):
    """stv (shared int64 (4,)) = the state after p digits, from state st[p - 1] and hist[p - 1].

    Every thread of the block must call it; sa, sb: shared int32 (BINS,) scratch.
    """
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    if tid == 0:
        for c in range(4):
            stv[c] = st[p - 1, c]
    for b in range(tid, BINS, nt):
        sa[b] = hist[p - 1, b]
    cuda.syncthreads()
    if stv[3] != 0:  # resolved earlier: the state carries over (uniform branch)
        return
    k_rem = stv[2]
    src = sa
    dst = sb
    off = 1
    while off < BINS:  # inclusive suffix sums, Hillis-Steele: src[b] = count of digits >= b
        for b in range(tid, BINS, nt):
            c = src[b]
            if b + off < BINS:
                c += src[b + off]
            dst[b] = c
        cuda.syncthreads()
        src, dst = dst, src
        off *= 2
    for b in range(tid, BINS, nt):  # the one bucket holding the k_rem-th largest remaining key
        above = src[b + 1] if b + 1 < BINS else 0
        if src[b] >= k_rem and above < k_rem:
            rem = k_rem - above
            q = p - 1
            if q < 4:
                stv[0] += b << (24 - 8 * q)
            else:
                stv[1] += b << (8 * (nb - 1 - (q - 4)))
            stv[2] = rem
            if src[b] - above == rem:  # the whole bucket is taken: selection decided
                stv[3] = p
    cuda.syncthreads()


@cuda_kernel
def _radix_init(hist, st, count, k, n_pass):
    """Zeroes the histograms and the output count; st[0] = no digits chosen, k missing."""
    for i in range(cuda.threadIdx.x, n_pass * BINS, cuda.blockDim.x):
        hist[i // BINS, i % BINS] = 0
    if cuda.threadIdx.x == 0:
        st[0, 0] = 0
        st[0, 1] = 0
        st[0, 2] = k
        st[0, 3] = 0
        count[0] = 0


@cuda_kernel
def _radix_pass(hist, st, keys, n, p, nb):
    """hist[p] += digit p's histogram over the keys matching the p digits chosen so far (st[p])."""
    sh = cuda.shared.array(BINS, np.int32)
    sa = cuda.shared.array(BINS, np.int32)
    sb = cuda.shared.array(BINS, np.int32)
    stv = cuda.shared.array(4, np.int64)
    tid = cuda.threadIdx.x
    for b in range(tid, BINS, cuda.blockDim.x):
        sh[b] = 0
    if p > 0:
        _resolve(stv, st, hist, p, nb, sa, sb)  # every block derives the same state
        if cuda.blockIdx.x == 0 and tid == 0:
            for c in range(4):
                st[p, c] = stv[c]
    else:
        if tid == 0:
            for c in range(4):
                stv[c] = st[0, c]
        cuda.syncthreads()
    if stv[3] != 0:
        return
    id_max = (1 << (8 * nb)) - 1
    vp = stv[0]
    ip = stv[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        vk = _vkey(keys[i])
        if _cmp(vk, id_max - i, vp, ip, p, nb) == 0:
            cuda.atomic.add(sh, _digit(vk, id_max - i, p, nb), 1)
    cuda.syncthreads()
    for b in range(tid, BINS, cuda.blockDim.x):  # one global atomic per used bucket and block
        c = sh[b]
        if c > 0:
            cuda.atomic.add(hist, (p, b), c)


@cuda_kernel
def _radix_gather(cand, count, st, hist, keys, n, n_pass, nb):
    """cand[:k] = the positions whose key is >= the decided prefix (exactly k of them), any order."""
    sa = cuda.shared.array(BINS, np.int32)
    sb = cuda.shared.array(BINS, np.int32)
    stv = cuda.shared.array(4, np.int64)
    _resolve(stv, st, hist, n_pass, nb, sa, sb)
    lv = stv[3]  # never 0 here: after the last digit every bucket holds one key
    id_max = (1 << (8 * nb)) - 1
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if _cmp(_vkey(keys[i]), id_max - i, stv[0], stv[1], lv, nb) >= 0:
            w = cuda.atomic.add(count, 0, 1)
            if w < cand.shape[0]:
                cand[w] = i


@cuda_kernel
def _sort_top(out_ids, out_vals, cand, keys, logits, k):
    """out[:k] = cand[:k] by logit descending, ties -> lower id; one block, bitonic in shared memory."""
    sk = cuda.shared.array(TOP_K_MAX, np.int64)
    si = cuda.shared.array(TOP_K_MAX, np.int32)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    m = 1
    while m < k:
        m *= 2
    for i in range(tid, m, nt):
        if i < k:
            j = cand[i]
            sk[i] = _vkey(keys[j])
            si[i] = j
        else:  # padding sorts last
            sk[i] = -1
            si[i] = 2147483647
    cuda.syncthreads()
    size = 2
    while size <= m:
        stride = size // 2
        while stride > 0:
            for i in range(tid, m, nt):
                j = i ^ stride
                if j > i:
                    a = sk[i]
                    b = sk[j]
                    first = a > b or (a == b and si[i] < si[j])  # i ranks before j
                    if first != ((i & size) == 0):  # (i & size) == 0: a descending run
                        sk[i] = b
                        sk[j] = a
                        x = si[i]
                        si[i] = si[j]
                        si[j] = x
            cuda.syncthreads()
            stride //= 2
        size *= 2
    for i in range(tid, k, nt):
        out_ids[i] = si[i]
        out_vals[i] = logits[si[i]]


# ---------------------------------------------------------------- host entry points


def top_k(out_ids, out_vals, logits, n: int, k: int, work) -> int:
    """out_ids/out_vals[:k'] = the k' = min(k, n) largest logits[:n], descending, ties -> lower id; returns k'.

    Device arrays; work is a kernels.cuda.sampling.Work (hist, state, cand, count are used).
    """
    k = min(k, n)
    if k < 1:
        raise ValueError("top_k: k and n must be >= 1")
    if k > TOP_K_MAX:
        raise ValueError(f"top_k: k = {k} is above the device limit of {TOP_K_MAX}")
    nb = max(1, ((n - 1).bit_length() + 7) // 8)  # id bytes
    n_pass = 4 + nb
    keys = logits.view(np.uint32)  # the float bits; _vkey orders them
    grid, block = launch.one_block(THREADS)
    _radix_init[grid, block](work.hist, work.state, work.count, k, n_pass)
    grid, block = launch.stride_blocks(n, THREADS, 4 * THREADS)
    for p in range(n_pass):
        _radix_pass[grid, block](work.hist, work.state, keys, n, p, nb)
    _radix_gather[grid, block](work.cand, work.count, work.state, work.hist, keys, n, n_pass, nb)
    grid, block = launch.one_block()
    _sort_top[grid, block](out_ids, out_vals, work.cand, keys, logits, k)
    return k


def top_k_host(logits, n: int, k: int, work) -> tuple[np.ndarray, np.ndarray]:
    """top_k into work's buffers, then (ids int32 (k',), vals float32 (k',)) on the host."""
    k = top_k(work.ids, work.vals, logits, n, k, work)
    return work.ids[:k].copy_to_host(), work.vals[:k].copy_to_host()
