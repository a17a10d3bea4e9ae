//! The encoder's batch-norm and fused ReLU + max-pool custom ops (`xrai::layers`) against
//! Candle's own ops: forward values, gradients, and the running statistics.

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use xrai_bench::xrai::layers::{relu_max_pool2, BatchNorm2d};

fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().map(|v| v.abs()).fold(1e-6f32, f32::max);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= tol * scale, "{what}: worst difference {worst} (scale {scale})");
}

#[test]
fn batch_norm_matches_candle_in_values_gradients_and_running_stats() {
    let dev = Device::Cpu;
    for (b, c, h, w) in [(4usize, 3usize, 5usize, 6usize), (8, 16, 4, 4), (2, 1, 3, 3)] {
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (b, c, h, w), &dev).unwrap() + 0.7).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
        // both start from the same random affine parameters
        let gamma = Tensor::randn(1f32, 0.3, c, &dev).unwrap();
        let beta = Tensor::randn(0f32, 0.3, c, &dev).unwrap();
        let (vm1, vm2) = (VarMap::new(), VarMap::new());
        let ours = BatchNorm2d::new(c, 1e-5, VarBuilder::from_varmap(&vm1, DType::F32, &dev)).unwrap();
        let theirs = candle_nn::batch_norm(c, 1e-5, VarBuilder::from_varmap(&vm2, DType::F32, &dev)).unwrap();
        for vm in [&vm1, &vm2] {
            let data = vm.data().lock().unwrap();
            data["weight"].set(&gamma).unwrap();
            data["bias"].set(&beta).unwrap();
        }
        let y1 = ours.forward_t(x.as_tensor(), true).unwrap();
        let y2 = theirs.forward_t(x.as_tensor(), true).unwrap();
        close(&y1, &y2, 1e-4, "forward");
        let g1 = (&y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let get = |vm: &VarMap, name: &str| vm.data().lock().unwrap()[name].as_tensor().clone();
        close(
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
            1e-3,
            "grad x",
        );
        for name in ["weight", "bias"] {
            close(
                g1.get(&get(&vm1, name)).unwrap(),
                g2.get(&get(&vm2, name)).unwrap(),
                1e-3,
                name,
            );
        }
        for name in ["running_mean", "running_var"] {
            close(&get(&vm1, name), &get(&vm2, name), 1e-4, name);
        }
        // evaluation mode uses the running statistics, as Candle's does
        close(
            &ours.forward_t(x.as_tensor(), false).unwrap(),
            &theirs.forward_t(x.as_tensor(), false).unwrap(),
            1e-4,
            "eval",
        );
    }
}

#[test]
fn relu_max_pool_matches_candle() {
    let dev = Device::Cpu;
    for (b, c, h, w) in [(3usize, 4usize, 8usize, 6usize), (1, 1, 2, 2), (2, 5, 4, 10)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (b, c, h / 2, w / 2), &dev).unwrap();
        let y1 = relu_max_pool2(x.as_tensor()).unwrap();
        let y2 = x.as_tensor().relu().unwrap().max_pool2d(2).unwrap();
        close(&y1, &y2, 1e-6, "forward");
        // Gradient of Σ r·y: r at each window's maximum when it is positive, 0 elsewhere,
        // computed here by hand. (Candle 0.11's own max_pool2d backward gives r/4 at the
        // maximum — measured: [0, 0, 0, 0.25] for one 2×2 window — so it is not the yardstick.)
        let g1 = (&y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let xs = x.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let rs = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut expected = vec![0f32; xs.len()];
        for p in 0..b * c {
            for i in 0..h / 2 {
                for j in 0..w / 2 {
                    let idx = [
                        (2 * i) * w + 2 * j,
                        (2 * i) * w + 2 * j + 1,
                        (2 * i + 1) * w + 2 * j,
                        (2 * i + 1) * w + 2 * j + 1,
                    ]
                    .map(|k| p * h * w + k);
                    let best = idx
                        .iter()
                        .copied()
                        .fold(idx[0], |a, k| if xs[k] > xs[a] { k } else { a });
                    if xs[best] > 0.0 {
                        expected[best] += rs[p * (h / 2) * (w / 2) + i * (w / 2) + j];
                    }
                }
            }
        }
        close(
            g1.get(x.as_tensor()).unwrap(),
            &Tensor::new(expected, &dev).unwrap(),
            1e-6,
            "grad",
        );
    }
    // ties go to the first maximum in row-major order; an all-negative window passes nothing
    let x = Var::new(&[[[[0.5f32, 2.0, -1.0, -2.0], [2.0, 0.0, -3.0, -4.0]]]], &dev).unwrap();
    let g = relu_max_pool2(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(g, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(
        relu_max_pool2(&Tensor::zeros((1, 1, 3, 4), DType::F32, &dev).unwrap()).is_err(),
        "odd H must be refused"
    );
}
