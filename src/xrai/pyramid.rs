//! cryoAI's fixed Gaussian-pyramid input channels.

/// cryoAI's fixed input pyramid: each `side`² image blurred by Gaussians of σ = 0.5·2^i pixels,
/// i = 0 … levels − 1 (zero padding, separable, truncated at 3σ), stacked image-major:
/// `[image][level][row][col]`. Computed per image, never learned.
pub fn gaussian_pyramid(images: &[f32], side: usize, levels: usize) -> Vec<f32> {
    let n = images.len() / (side * side);
    let mut out = vec![0f32; n * levels * side * side];
    let mut tmp = vec![0f32; side * side];
    for level in 0..levels {
        let sigma = 0.5 * (1 << level) as f64;
        let r = (3.0 * sigma).ceil() as i64;
        let kernel: Vec<f32> = (-r..=r)
            .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp() as f32)
            .collect();
        let total: f32 = kernel.iter().sum();
        let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
        for (i, img) in images.chunks_exact(side * side).enumerate() {
            let o = &mut out[(i * levels + level) * side * side..][..side * side];
            // rows, then columns
            blur_axis(img, &mut tmp, side, &kernel, true);
            blur_axis(&tmp, o, side, &kernel, false);
        }
    }
    out
}

/// One pass of a separable blur of a `side × side` image along x (`along_x`) or y with an
/// odd-length kernel centred on each pixel; pixels outside the image count as zero.
fn blur_axis(src: &[f32], dst: &mut [f32], side: usize, kernel: &[f32], along_x: bool) {
    let r = (kernel.len() / 2) as i64;
    for y in 0..side {
        for x in 0..side {
            let centre = if along_x { x } else { y } as i64;
            let mut acc = 0f32;
            for (k, w) in kernel.iter().enumerate() {
                let t = centre + k as i64 - r;
                if (0..side as i64).contains(&t) {
                    let t = t as usize;
                    acc += w * if along_x { src[y * side + t] } else { src[t * side + x] };
                }
            }
            dst[y * side + x] = acc;
        }
    }
}
