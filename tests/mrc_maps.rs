//! Any MRC map (issue 16): maps written by another program (`mrcfile`, tests/data/mrc) in modes
//! 0, 1, 2 and 6, even and odd sides, byte orders and axis orders built by hand, refusals by name;
//! and FSC, alignment and phasing on even-sided boxes.

use std::path::{Path, PathBuf};
use std::process::Command;

use num_complex::Complex64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustfft::FftDirection;
use xrai_bench::eval::align::{align, align_translation, AlignParams};
use xrai_bench::eval::density::transform_from_density;
use xrai_bench::eval::fft::{fftshift, ifftshift, signed_index, Fft3};
use xrai_bench::eval::fsc::{fsc, THRESHOLD_HALF};
use xrai_bench::eval::phasing::{phase, PhasingParams};
use xrai_bench::mrc::{read_mrc, read_mrc_map, write_mrc};
use xrai_bench::volume::{DensityMap, Volume};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mrc").join(name)
}

// ---------------------------------------------------------------------------------------------
// Reading

#[test]
fn maps_written_by_mrcfile_read_to_the_same_values_and_voxel_size() {
    // tools/make_mrc_fixtures.py: voxel (x, y, z) holds v = x + 10 y + 100 z in the mode's range.
    type Value = fn(f64) -> f64;
    let cases: [(&str, i32, usize, f64, [f64; 3], Value); 4] = [
        ("mode0_int8.mrc", 0, 10, 1.5, [5.0; 3], |v| v % 256.0 - 128.0),
        ("mode1_int16.mrc", 1, 10, 2.25, [5.0; 3], |v| v - 300.0),
        ("mode2_float32.mrc", 2, 10, 0.8, [0.0; 3], |v| v * 0.25 - 1.5),
        ("mode6_uint16.mrc", 6, 8, 3.0, [0.0; 3], |v| v + 60000.0),
    ];
    for (name, mode, m, voxel, origin_index, value) in cases {
        let read = read_mrc_map(fixture(name)).unwrap();
        assert_eq!((read.mode, read.map.m), (mode, m), "{name}");
        assert!(
            (read.map.spacing - voxel).abs() < 1e-6,
            "{name}: voxel {}",
            read.map.spacing
        );
        assert!(read.voxel_from_header);
        assert_eq!(read.origin_index, origin_index, "{name}");
        for z in 0..m {
            for y in 0..m {
                for x in 0..m {
                    let want = value((x + 10 * y + 100 * z) as f64) as f32;
                    assert_eq!(
                        read.map.data[read.map.index(x, y, z)],
                        want,
                        "{name} at ({x}, {y}, {z})"
                    );
                }
            }
        }
    }
    // The int8 map's origin (−7.5 Å, voxel 1.5 Å) puts 0 Å at voxel 5 = m/2: no offset.
    assert_eq!(
        read_mrc_map(fixture("mode0_int8.mrc")).unwrap().origin_offset(),
        [0.0; 3]
    );
}

#[test]
fn even_maps_round_trip_with_the_centre_at_m_over_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("even.mrc");
    let map = Volume {
        m: 8,
        spacing: 1.25,
        data: (0..512).map(|i| i as f32 - 100.0).collect(),
    };
    write_mrc(&path, &map, false).unwrap();
    let back = read_mrc_map(&path).unwrap();
    assert_eq!(back.map, map);
    assert_eq!(back.origin_index, [4.0; 3]);
    assert_eq!(back.origin_offset(), [0.0; 3]);
}

/// An MRC header by hand: shape (columns, rows, sections), mode, cell lengths, axis order and
/// byte order.
fn mrc_header(shape: [i32; 3], mode: i32, cell: [f32; 3], axes: [i32; 3], big_endian: bool) -> Vec<u8> {
    let mut h = vec![0u8; 1024];
    let mut put = |word: usize, bytes: [u8; 4]| h[4 * word..4 * word + 4].copy_from_slice(&bytes);
    let int = |v: i32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let float = |v: f32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    for k in 0..3 {
        put(k, int(shape[k]));
        put(16 + k, int(axes[k]));
        put(10 + k, float(cell[k]));
    }
    // Sampling along x, y, z.
    for k in 0..3 {
        let along = (axes[k] - 1) as usize;
        put(7 + along, int(shape[k]));
    }
    put(3, int(mode));
    h[208..212].copy_from_slice(b"MAP ");
    h[212] = if big_endian { 0x11 } else { 0x44 };
    h[213] = h[212];
    h
}

#[test]
fn big_endian_maps_with_permuted_axes_are_put_in_x_y_z_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("permuted.mrc");
    // Columns run along z, rows along x, sections along y; the i-th stored value is i.
    let mut bytes = mrc_header([3, 3, 3], 1, [6.0; 3], [3, 1, 2], true);
    for i in 0..27i16 {
        bytes.extend(i.to_be_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let map = read_mrc(&path).unwrap();
    assert_eq!((map.m, map.spacing), (3, 2.0));
    for z in 0..3 {
        for y in 0..3 {
            for x in 0..3 {
                // Stored index c + 3 r + 9 s with c = z, r = x, s = y.
                assert_eq!(
                    map.data[map.index(x, y, z)],
                    (z + 3 * x + 9 * y) as f32,
                    "({x}, {y}, {z})"
                );
            }
        }
    }
}

#[test]
fn maps_that_cannot_be_read_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let float_data = |n: usize| vec![0u8; 4 * n];
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "noncubic.mrc",
            [
                mrc_header([64, 64, 65], 2, [64.0, 64.0, 65.0], [1, 2, 3], false),
                float_data(64 * 64 * 65),
            ]
            .concat(),
            &["64×64×65", "cube"],
        ),
        (
            "short.mrc",
            [mrc_header([8, 8, 8], 2, [8.0; 3], [1, 2, 3], false), float_data(511)].concat(),
            &["truncated", "3072", "3068"],
        ),
        (
            "anisotropic.mrc",
            [
                mrc_header([5, 5, 5], 2, [10.0, 10.0, 12.0], [1, 2, 3], false),
                float_data(125),
            ]
            .concat(),
            &["voxel sizes differ", "2.40000"],
        ),
        (
            "mode12.mrc",
            [mrc_header([5, 5, 5], 12, [5.0; 3], [1, 2, 3], false), float_data(125)].concat(),
            &["mode 12", "not supported"],
        ),
        (
            "axes.mrc",
            [mrc_header([5, 5, 5], 2, [5.0; 3], [1, 1, 3], false), float_data(125)].concat(),
            &["mapc/mapr/maps = 1/1/3"],
        ),
    ];
    for (name, bytes, wanted) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = read_mrc(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert!(err.contains(name), "{name}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{name}: expected '{w}' in: {err}");
        }
    }
    // The OS error appears once in the whole chain, not once per layer.
    let err = anyhow::Error::new(read_mrc(dir.path().join("missing.mrc")).unwrap_err());
    let text = format!("{err:?}");
    let os = std::fs::File::open(dir.path().join("missing.mrc"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("missing.mrc"), "{text}");
    assert_eq!(text.matches(&os).count(), 1, "{text}");
}

// ---------------------------------------------------------------------------------------------
// Even boxes in FSC, alignment and phasing

/// A compact "molecule": Gaussian blobs (σ = 1 voxel) within m/5 of the centre voxel m/2.
fn blob_map(m: usize, seed: u64) -> DensityMap {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = (m / 2) as f64;
    let r = m as f64 / 5.0;
    let blobs: Vec<[f64; 3]> = (0..40)
        .map(|_| loop {
            let p = [0, 1, 2].map(|_| rng.random_range(-r..r));
            if p.iter().map(|v| v * v).sum::<f64>() < r * r {
                break p.map(|v| v + c);
            }
        })
        .collect();
    let mut data = vec![0f32; m * m * m];
    for (i, v) in data.iter_mut().enumerate() {
        let p = [(i % m) as f64, ((i / m) % m) as f64, (i / (m * m)) as f64];
        *v = blobs
            .iter()
            .map(|b| (-(0..3).map(|k| (p[k] - b[k]).powi(2)).sum::<f64>() / 2.0).exp())
            .sum::<f64>() as f32;
    }
    Volume { m, spacing: 1.7, data }
}

/// `map` with the Fourier coefficients beyond index radius `k_cut` given random phases (Friedel
/// mates kept conjugate, self-conjugate Nyquist coefficients kept real), in FFT order directly
/// so that the even grid's unpaired Nyquist planes are handled by the test itself.
fn phases_randomised_beyond(map: &DensityMap, k_cut: f64, seed: u64) -> DensityMap {
    let m = map.m;
    let n = m * m * m;
    let mut f = ifftshift(
        &map.data
            .iter()
            .map(|&v| Complex64::new(v as f64, 0.0))
            .collect::<Vec<_>>(),
        m,
    );
    Fft3::new(m, FftDirection::Forward).process(&mut f, &mut Vec::new());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mirror = |i: usize| {
        let (u, v, w) = (i % m, (i / m) % m, i / (m * m));
        (((m - w) % m) * m + (m - v) % m) * m + (m - u) % m
    };
    for i in 0..n {
        let k = [i % m, (i / m) % m, i / (m * m)].map(|u| signed_index(u, m) as f64);
        let j = mirror(i);
        if (k[0] * k[0] + k[1] * k[1] + k[2] * k[2]).sqrt() <= k_cut || j < i {
            continue;
        }
        let modulus = f[i].norm().max(1e-6);
        if i == j {
            f[i] = Complex64::new(if rng.random::<bool>() { modulus } else { -modulus }, 0.0);
        } else {
            f[i] = Complex64::from_polar(modulus, rng.random::<f64>() * std::f64::consts::TAU);
            f[j] = f[i].conj();
        }
    }
    Fft3::new(m, FftDirection::Inverse).process(&mut f, &mut Vec::new());
    let f = fftshift(&f, m);
    let max = f.iter().map(|v| v.re.abs()).fold(0.0, f64::max);
    let worst_imaginary = f.iter().map(|v| v.im.abs()).fold(0.0, f64::max);
    assert!(worst_imaginary < 1e-9 * max, "the scrambled map is not real");
    Volume {
        m,
        spacing: map.spacing,
        data: f.iter().map(|v| (v.re / n as f64) as f32).collect(),
    }
}

#[test]
fn fsc_of_an_even_map_with_a_copy_is_one_in_every_shell() {
    let map = blob_map(64, 1);
    let curve = fsc(&map, &map.clone()).unwrap();
    assert_eq!(curve.fsc.len(), 32, "shells 0 … m/2 − 1");
    for (k, f) in curve.fsc.iter().enumerate() {
        assert!((f - 1.0).abs() < 1e-9, "shell {k}: {f}");
    }
}

#[test]
fn fsc_of_an_even_map_crosses_where_its_phases_were_randomised() {
    let map = blob_map(64, 2);
    for shell in [8usize, 12, 20] {
        // Every coefficient of shells ≤ `shell` is kept (radius < shell + ½), every one beyond is
        // scrambled.
        let scrambled = phases_randomised_beyond(&map, shell as f64 + 0.5, shell as u64);
        let curve = fsc(&map, &scrambled).unwrap();
        for (k, f) in curve.fsc.iter().enumerate() {
            if k <= shell {
                assert!(*f > 0.9999, "shell {k} (kept): {f}");
            } else {
                assert!(f.abs() < 0.25, "shell {k} (scrambled): {f}");
            }
        }
        let r = curve.resolution(THRESHOLD_HALF);
        assert!(
            r.crossed && (r.shell - shell as f64).abs() <= 1.0,
            "randomised beyond {shell}, crossing at {}",
            r.shell
        );
    }
}

/// `map` inverted through its centre voxel m/2 and rolled by `shift` voxels (periodic).
fn inverted_and_rolled(map: &DensityMap, shift: [usize; 3]) -> DensityMap {
    let m = map.m;
    let mut data = vec![0f32; m * m * m];
    for z in 0..m {
        for y in 0..m {
            for x in 0..m {
                // r → −r about voxel c = m/2 is index i → 2c − i = m − i (mod m) on an even grid.
                let src = map.index((m - x) % m, (m - y) % m, (m - z) % m);
                data[map.index((x + shift[0]) % m, (y + shift[1]) % m, (z + shift[2]) % m)] = map.data[src];
            }
        }
    }
    Volume {
        m,
        spacing: map.spacing,
        data,
    }
}

#[test]
fn translation_alignment_undoes_a_shift_and_an_inversion_on_an_even_box() {
    let map = blob_map(64, 3);
    let moved = inverted_and_rolled(&map, [3, 64 - 5, 2]);
    assert!(
        fsc(&map, &moved).unwrap().fsc[4] < 0.9,
        "the test map is not actually moved"
    );
    let (aligned, how) = align_translation(&map, &moved, true);
    assert!(how.inverted);
    let curve = fsc(&map, &aligned).unwrap().fsc;
    assert!(curve.iter().all(|&f| f > 0.999), "{curve:?}");
}

#[test]
fn rotation_alignment_works_on_an_even_box() {
    let m = 32;
    let map = blob_map(m, 4);
    // A quarter turn about z through voxel m/2: g(x, y, z) = f(y, m − x, z).
    let mut turned = map.clone();
    for z in 0..m {
        for y in 0..m {
            for x in 0..m {
                turned.data[map.index(x, y, z)] = map.data[map.index(y, (m - x) % m, z)];
            }
        }
    }
    assert!(
        fsc(&map, &turned).unwrap().fsc[3] < 0.9,
        "the test map is not actually turned"
    );
    let (aligned, how) = align(&map, &turned, &AlignParams::default()).unwrap();
    assert!(!how.inverted);
    assert!(
        (how.rotation.angle().to_degrees() - 90.0).abs() < 1.0,
        "{:.2}°",
        how.rotation.angle().to_degrees()
    );
    let curve = fsc(&map, &aligned).unwrap().fsc;
    assert!(curve[..=m / 4].iter().all(|&f| f > 0.95), "{curve:?}");
}

#[test]
fn amplitudes_on_an_even_box_phase_back_to_the_map() {
    // |F| as another program would hand it over: numpy's fftshift(|fftn(map)|), the zero
    // frequency at index m/2, centred by hand here rather than by the library's shift.
    let map = blob_map(32, 5);
    let m = map.m;
    let mut f: Vec<Complex64> = map.data.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
    Fft3::new(m, FftDirection::Forward).process(&mut f, &mut Vec::new());
    let mut data = vec![0f32; m * m * m];
    for (i, v) in f.iter().enumerate() {
        let [u, v2, w] = [i % m, (i / m) % m, i / (m * m)].map(|a| (a + m / 2) % m);
        data[(w * m + v2) * m + u] = v.norm() as f32;
    }
    let amplitude = Volume {
        m,
        spacing: transform_from_density(&map).spacing,
        data,
    };
    let params = PhasingParams {
        starts: 2,
        ..PhasingParams::default()
    };
    let phased = phase(&amplitude, &params);
    assert!((phased.density.spacing - map.spacing).abs() < 1e-9 * map.spacing);
    let (aligned, _) = align_translation(&map, &phased.density, true);
    let r = fsc(&map, &aligned).unwrap().resolution(THRESHOLD_HALF);
    assert!(
        r.resolution_px < 3.0,
        "phased even map: {:.2} px, Fourier error {:.3}",
        r.resolution_px,
        phased.fourier_error()
    );
}

// ---------------------------------------------------------------------------------------------
// Command line

#[test]
fn cli_fsc_takes_even_maps_and_refuses_non_cubic_ones_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.mrc");
    write_mrc(&a, &blob_map(64, 6), false).unwrap();
    let run = |args: &[&Path]| {
        Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
            .arg("fsc")
            .args(args)
            .arg("--json")
            .output()
            .unwrap()
    };
    let out = run(&[&a, &a]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["m"], 64);
    assert_eq!(json["curve"].as_array().unwrap().len(), 32);
    assert_eq!(json["crossed"], false);

    let bad = dir.path().join("box_64x64x65.mrc");
    let mut bytes = mrc_header([64, 64, 65], 2, [64.0, 64.0, 65.0], [1, 2, 3], false);
    bytes.resize(1024 + 4 * 64 * 64 * 65, 0);
    std::fs::write(&bad, bytes).unwrap();
    let out = run(&[&a, &bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("box_64x64x65.mrc") && err.contains("64×64×65"),
        "{err}"
    );
}
