//! The im2col + GEMM 3×3 convolution custom op (`xrai::conv`) against Candle's `conv2d`:
//! forward values, gradients w.r.t. input and weight (autograd of both), a finite-difference
//! check, one-thread and multi-thread chunking, and the errors for bad inputs.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use xrai_bench::xrai::conv::{conv3x3, Conv3x3};

fn randn(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// max |a − b| ≤ tol · max |b| (and b not all zero).
fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (vec(a), vec(b));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: reference is all zero");
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= tol * scale, "{what}: max error {err} > {tol} × {scale}");
}

/// (B, C, O, H, W): the requested shapes plus odd cases (1-pixel rows/columns, batches that
/// split into uneven chunks of images).
const SHAPES: [(usize, usize, usize, usize, usize); 6] = [
    (3, 5, 7, 8, 8),
    (2, 1, 4, 6, 10),
    (2, 3, 2, 1, 5),
    (1, 2, 3, 7, 1),
    (10, 4, 6, 4, 4),
    (5, 16, 32, 16, 16),
];

fn check_forward() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(b, c, o, h, w) in &SHAPES {
        let x = randn(&mut rng, &[b, c, h, w]);
        let k = randn(&mut rng, &[o, c, 3, 3]);
        let y = conv3x3(&x, &k).unwrap();
        let r = x.conv2d(&k, 1, 1, 1, 1).unwrap();
        assert_close(&y, &r, 1e-4, &format!("forward {:?}", (b, c, o, h, w)));
    }
}

/// Gradients of L = Σ y ⊙ r for the custom op and for candle's conv2d.
fn check_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for &(b, c, o, h, w) in &SHAPES {
        let x = Var::from_tensor(&randn(&mut rng, &[b, c, h, w])).unwrap();
        let k = Var::from_tensor(&randn(&mut rng, &[o, c, 3, 3])).unwrap();
        let r = randn(&mut rng, &[b, o, h, w]);
        let g1 = (conv3x3(&x, &k).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (x.conv2d(&k, 1, 1, 1, 1).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let s = format!("{:?}", (b, c, o, h, w));
        assert_close(g1.get(&x).unwrap(), g2.get(&x).unwrap(), 1e-4, &format!("grad x {s}"));
        assert_close(g1.get(&k).unwrap(), g2.get(&k).unwrap(), 1e-4, &format!("grad w {s}"));
    }
}

#[test]
fn forward_matches_candle_conv2d() {
    check_forward();
}

#[test]
fn gradients_match_candle_conv2d() {
    check_gradients();
}

/// With one rayon thread every batch is one chunk of images (several images per GEMM);
/// with several threads the chunks are smaller: both must agree with the reference.
#[test]
fn one_and_three_threads_agree_with_candle() {
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            check_forward();
            check_gradients();
        });
    }
}

/// A non-trainable input (like the encoder's images) gets no gradient; the weight's is right.
#[test]
fn constant_input_gets_no_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = randn(&mut rng, &[4, 1, 12, 12]);
    let k = Var::from_tensor(&randn(&mut rng, &[8, 1, 3, 3])).unwrap();
    let g1 = conv3x3(&x, &k)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g2 = x
        .conv2d(&k, 1, 1, 1, 1)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g1.get(&x).is_none());
    assert_close(g1.get(&k).unwrap(), g2.get(&k).unwrap(), 1e-4, "grad w, constant x");
}

/// Central differences of L = ½ Σ r ⊙ y² (quadratic in x and in w, so central differences are
/// exact up to rounding; the loss is summed in f64) at border and interior entries.
#[test]
fn gradients_match_finite_differences() {
    let (b, c, o, h, w) = (2, 3, 4, 5, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x0 = vec(&randn(&mut rng, &[b, c, h, w]));
    let k0 = vec(&randn(&mut rng, &[o, c, 3, 3]));
    let r = vec(&randn(&mut rng, &[b, o, h, w]));
    let dev = Device::Cpu;
    let loss = |x: &[f32], k: &[f32]| -> f64 {
        let x = Tensor::from_slice(x, (b, c, h, w), &dev).unwrap();
        let k = Tensor::from_slice(k, (o, c, 3, 3), &dev).unwrap();
        let y = vec(&conv3x3(&x, &k).unwrap());
        y.iter()
            .zip(&r)
            .map(|(&y, &r)| 0.5 * r as f64 * (y as f64) * (y as f64))
            .sum()
    };
    let xv = Var::from_slice(&x0, (b, c, h, w), &dev).unwrap();
    let kv = Var::from_slice(&k0, (o, c, 3, 3), &dev).unwrap();
    let rt = Tensor::from_slice(&r, (b, o, h, w), &dev).unwrap();
    let l = ((conv3x3(&xv, &kv).unwrap().sqr().unwrap() * &rt).unwrap() * 0.5)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = l.backward().unwrap();
    let gx = vec(grads.get(&xv).unwrap());
    let gk = vec(grads.get(&kv).unwrap());
    let eps = 1e-2f32;
    let fd = |x: &[f32], k: &[f32], i: usize, of_x: bool| -> f64 {
        let (mut xp, mut kp) = (x.to_vec(), k.to_vec());
        let (mut xm, mut km) = (x.to_vec(), k.to_vec());
        if of_x {
            xp[i] += eps;
            xm[i] -= eps;
        } else {
            kp[i] += eps;
            km[i] -= eps;
        }
        (loss(&xp, &kp) - loss(&xm, &km)) / (2.0 * eps as f64)
    };
    // x: corner, edge, interior pixels of different images/channels
    let xi = |bi: usize, ci: usize, yy: usize, xx: usize| ((bi * c + ci) * h + yy) * w + xx;
    for i in [
        xi(0, 0, 0, 0),
        xi(0, 2, 0, 3),
        xi(1, 1, 2, 3),
        xi(1, 2, 4, 5),
        xi(0, 1, 4, 0),
    ] {
        let (a, n) = (gx[i] as f64, fd(&x0, &k0, i, true));
        assert!(
            (a - n).abs() <= 2e-3 * (1.0 + n.abs()),
            "dL/dx[{i}]: autograd {a}, finite difference {n}"
        );
    }
    for i in [0, 4, 8, 13, o * c * 9 - 1] {
        let (a, n) = (gk[i] as f64, fd(&x0, &k0, i, false));
        assert!(
            (a - n).abs() <= 2e-3 * (1.0 + n.abs()),
            "dL/dw[{i}]: autograd {a}, finite difference {n}"
        );
    }
}

#[test]
fn bad_inputs_give_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
    let k = Tensor::zeros((5, 3, 3, 3), DType::F32, &dev).unwrap();
    let err = |r: candle_core::Result<Tensor>| r.expect_err("expected an error").to_string();
    // dtype
    let e = err(conv3x3(
        &x.to_dtype(DType::F64).unwrap(),
        &k.to_dtype(DType::F64).unwrap(),
    ));
    assert!(e.contains("f32"), "{e}");
    let e = err(conv3x3(&x, &k.to_dtype(DType::F16).unwrap()));
    assert!(e.contains("f32"), "{e}");
    // shapes
    let e = err(conv3x3(&x.reshape((6, 4, 4)).unwrap(), &k));
    assert!(e.contains("[B, C, H, W]"), "{e}");
    let e = err(conv3x3(&x, &Tensor::zeros((5, 3, 5, 5), DType::F32, &dev).unwrap()));
    assert!(e.contains("3×3"), "{e}");
    let e = err(conv3x3(&x, &Tensor::zeros((5, 2, 3, 3), DType::F32, &dev).unwrap()));
    assert!(e.contains("input channels"), "{e}");
    // layout: the op itself refuses strided input (the `conv3x3` wrapper makes it contiguous)
    let xt = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev)
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let e = err(xt.apply_op2(&k, Conv3x3));
    assert!(e.contains("contiguous"), "{e}");
    assert!(conv3x3(&xt, &k).is_ok());
}
