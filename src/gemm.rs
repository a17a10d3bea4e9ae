//! One bounds-checked GEMM over `matrixmultiply` (strided views of slices), generic over f32
//! and f64 through [`Scalar`]: f32 for the X-RAI convolutions and the EMC likelihood, f64 for the
//! molecular transform's separable DFT.

/// An element type `matrixmultiply` has a kernel for (`sgemm` for f32, `dgemm` for f64).
pub trait Scalar: Copy {
    /// The raw kernel: `C = α A·B + β C` on strided pointers.
    ///
    /// # Safety
    /// As for `matrixmultiply::sgemm`/`dgemm`: every element of A (m × k), B (k × n) and
    /// C (m × n) addressed by the strides is inside its allocation, and C's elements are distinct.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Scalar for f32 {
    #[inline]
    unsafe fn kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Scalar for f64 {
    #[inline]
    unsafe fn kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// `C[m, n] = α A[m, k] · B[k, n] + β C` with explicit (row, column) strides, single-threaded
/// (callers split the work over rayon). With k = 0, C becomes β C. Panics if a view reaches
/// past its slice or if C's strides would make two of its elements overlap.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Scalar>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    beta: T,
    c: &mut [T],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds of the strided views, so the unsafe call below stays inside the slices.
    let last = |r: usize, cl: usize, rs: usize, cs: usize| {
        (r - 1)
            .checked_mul(rs)
            .and_then(|x| (cl - 1).checked_mul(cs).and_then(|y| x.checked_add(y)))
    };
    let fits = |r: usize, cl: usize, rs: usize, cs: usize, len: usize| last(r, cl, rs, cs).is_some_and(|l| l < len);
    if k > 0 {
        assert!(fits(m, k, rsa, csa, a.len()), "gemm: A out of bounds");
        assert!(fits(k, n, rsb, csb, b.len()), "gemm: B out of bounds");
    }
    assert!(fits(m, n, rsc, csc, c.len()), "gemm: C out of bounds");
    // Distinct elements of C: rows laid after whole rows, or columns after whole columns.
    let distinct = match (m, n) {
        (1, 1) => true,
        (1, _) => csc > 0,
        (_, 1) => rsc > 0,
        _ => (csc > 0 && rsc >= n.saturating_mul(csc)) || (rsc > 0 && csc >= m.saturating_mul(rsc)),
    };
    assert!(distinct, "gemm: C's strides ({rsc}, {csc}) overlap its elements");
    // SAFETY: every accessed element lies within its slice and C's elements are distinct
    // (both checked above); isize conversions hold because the offsets fit in a slice length.
    unsafe {
        T::kernel(
            m,
            k,
            n,
            alpha,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A (2 × 3) · B (3 × 2) by hand: [[1, 2, 3], [4, 5, 6]] · [[7, 8], [9, 10], [11, 12]]
    /// = [[58, 64], [139, 154]].
    const A: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    const B: [f64; 6] = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
    const AB: [f64; 4] = [58.0, 64.0, 139.0, 154.0];

    #[test]
    fn f64_row_major_with_alpha_and_beta() {
        let mut c = [1.0; 4];
        gemm(2, 3, 2, 2.0, &A, (3, 1), &B, (2, 1), -1.0, &mut c, (2, 1));
        assert_eq!(c, AB.map(|x| 2.0 * x - 1.0));
    }

    #[test]
    fn f32_strided_views_give_the_same_product() {
        // A given column-major (transposed storage), C written column-major with a padded stride.
        let at: Vec<f32> = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0].to_vec();
        let b: Vec<f32> = B.iter().map(|&x| x as f32).collect();
        let mut c = vec![0f32; 6];
        gemm(2, 3, 2, 1.0, &at, (1, 2), &b, (2, 1), 0.0, &mut c, (1, 3));
        assert_eq!(c, [58.0, 139.0, 0.0, 64.0, 154.0, 0.0]);
    }

    #[test]
    fn k_zero_scales_c_by_beta() {
        let mut c = [2.0f32; 4];
        gemm(2, 0, 2, 1.0, &[], (0, 0), &[], (0, 0), 0.5, &mut c, (2, 1));
        assert_eq!(c, [1.0; 4]);
    }

    #[test]
    #[should_panic(expected = "A out of bounds")]
    fn a_too_short_is_caught() {
        let mut c = [0.0; 4];
        gemm(2, 3, 2, 1.0, &A[..5], (3, 1), &B, (2, 1), 0.0, &mut c, (2, 1));
    }

    #[test]
    #[should_panic(expected = "C out of bounds")]
    fn c_too_short_is_caught() {
        let mut c = [0.0; 3];
        gemm(2, 3, 2, 1.0, &A, (3, 1), &B, (2, 1), 0.0, &mut c, (2, 1));
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_c_is_caught() {
        let mut c = [0.0; 4];
        gemm(2, 3, 2, 1.0, &A, (3, 1), &B, (2, 1), 0.0, &mut c, (1, 1));
    }
}
