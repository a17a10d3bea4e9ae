//! Numerical kernels of the likelihood step: the sparse-photon product and a vectorisable
//! natural logarithm (its dense products go through [`crate::gemm::gemm`]).

/// Rotations handled per pass of the sparse kernel (8 AVX registers of accumulators).
pub const SPARSE_TILE: usize = 64;

/// Sparse-photon log-likelihood of one frame against a block of rotations:
/// `out[r] = Σ_j values[j] · lt[index[j] · ldt + r]` for r < out.len() — only the frame's
/// non-zero pixels are read (Dragonfly's sparse photon format, Ayyer et al. 2016 §2.2).
/// `lt` is the block's log-slices stored pixel-major (ldt values per pixel).
pub fn sparse_dot(index: &[u32], values: &[f32], lt: &[f32], ldt: usize, out: &mut [f32]) {
    assert_eq!(index.len(), values.len());
    assert!(out.len() <= ldt);
    if let Some(&max) = index.iter().max() {
        assert!(
            (max as usize) * ldt + out.len() <= lt.len(),
            "sparse_dot: pixel index out of bounds"
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features; bounds are checked above.
            unsafe { sparse_dot_avx2(index, values, lt, ldt, out) };
            return;
        }
    }
    sparse_dot_generic(index, values, lt, ldt, out);
}

#[inline(always)]
fn sparse_dot_generic(index: &[u32], values: &[f32], lt: &[f32], ldt: usize, out: &mut [f32]) {
    let n = out.len();
    let mut r0 = 0;
    while r0 + SPARSE_TILE <= n {
        let mut acc = [0.0f32; SPARSE_TILE];
        for (&p, &v) in index.iter().zip(values) {
            let base = p as usize * ldt + r0;
            // SAFETY: base + SPARSE_TILE ≤ max index · ldt + n ≤ lt.len() (checked by the caller).
            let row = unsafe { lt.get_unchecked(base..base + SPARSE_TILE) };
            for (a, &x) in acc.iter_mut().zip(row) {
                *a = v.mul_add(x, *a);
            }
        }
        out[r0..r0 + SPARSE_TILE].copy_from_slice(&acc);
        r0 += SPARSE_TILE;
    }
    if r0 < n {
        let rest = &mut out[r0..];
        rest.fill(0.0);
        for (&p, &v) in index.iter().zip(values) {
            let base = p as usize * ldt + r0;
            for (a, &x) in rest.iter_mut().zip(&lt[base..base + (n - r0)]) {
                *a += v * x;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sparse_dot_avx2(index: &[u32], values: &[f32], lt: &[f32], ldt: usize, out: &mut [f32]) {
    sparse_dot_generic(index, values, lt, ldt, out)
}

/// ln x for x > 0 (|error| < 2e-7 relative to ln's scale), branch-free so loops over it
/// vectorise: x = 2^e·m with m ∈ [√½, √2), ln m = 2 atanh((m−1)/(m+1)) by its odd series.
#[inline(always)]
pub fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits() as i32;
    // Shift the mantissa range to [√½, √2): subtract the bits of √½ before splitting.
    let offset = bits - 0x3f35_04f3;
    let e = offset >> 23;
    let m = f32::from_bits((bits - (e << 23)) as u32);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0))));
    e as f32 * std::f32::consts::LN_2 + s * poly
}

/// `x[i] = ln(max(x[i], floor))` over a slice, vectorised where the CPU allows.
pub fn ln_in_place(x: &mut [f32], floor: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features.
            unsafe { ln_avx2(x, floor) };
            return;
        }
    }
    ln_generic(x, floor)
}

#[inline(always)]
fn ln_generic(x: &mut [f32], floor: f32) {
    for v in x.iter_mut() {
        *v = fast_ln(v.max(floor));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn ln_avx2(x: &mut [f32], floor: f32) {
    ln_generic(x, floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_ln_matches_ln() {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            let err = (fast_ln(x) as f64 - (x as f64).ln()).abs() / (x as f64).ln().abs().max(1.0);
            worst = worst.max(err);
            x *= 1.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn sparse_matches_dense() {
        let (pixels, ldt, n) = (50, 150, 137);
        let lt: Vec<f32> = (0..pixels * ldt)
            .map(|i| ((i * 37 % 101) as f32) / 17.0 - 2.0)
            .collect();
        let index = vec![3u32, 7, 8, 20, 49];
        let values = vec![1.0f32, 2.0, 1.0, 5.0, 3.0];
        let mut out = vec![0.0; n];
        sparse_dot(&index, &values, &lt, ldt, &mut out);
        for r in 0..n {
            let want: f32 = index
                .iter()
                .zip(&values)
                .map(|(&p, &v)| v * lt[p as usize * ldt + r])
                .sum();
            assert!((out[r] - want).abs() < 1e-4, "{r}: {} vs {want}", out[r]);
        }
    }
}
