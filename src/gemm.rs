//! A bounds-checked f32 GEMM over `matrixmultiply` (strided views of slices), shared by the
//! EMC likelihood and the X-RAI convolutions.

/// `C[m, n] = A[m, k] · B[k, n] + β C` with explicit (row, column) strides, single-threaded
/// (callers split the work over rayon). With k = 0, C becomes β C.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds of the strided views, so the unsafe call below stays inside the slices.
    let last = |r: usize, cl: usize, rs: usize, cs: usize| (r - 1) * rs + (cl - 1) * cs;
    if k > 0 {
        assert!(last(m, k, rsa, csa) < a.len(), "sgemm: A out of bounds");
        assert!(last(k, n, rsb, csb) < b.len(), "sgemm: B out of bounds");
    }
    assert!(last(m, n, rsc, csc) < c.len(), "sgemm: C out of bounds");
    // SAFETY: all accessed elements lie within the slices (checked above); C's strides do not
    // alias (callers pass row-major or column-major layouts of distinct elements).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}
