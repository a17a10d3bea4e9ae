//! Rotations: uniform sampling on SO(3), quaternion ↔ matrix (nalgebra), pose files.
//!
//! Convention (DESIGN.md): a pose R maps detector-frame scattering vectors into the molecule
//! frame, so image i samples the volume at R_i s_p; equivalently the molecule is rotated by Rᵀ.
//! Quaternions are stored scalar-first (w, x, y, z), unit, with w ≥ 0 (q and −q are the same
//! rotation; w ≥ 0 picks one).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use nalgebra::{Quaternion, Rotation3, UnitQuaternion};
use rand::Rng;
use rand_distr::StandardNormal;

/// A uniformly distributed rotation: a 4D standard normal vector normalised is uniform on S³,
/// and S³ → SO(3) preserves uniformity (Haar measure).
pub fn random_rotation<R: Rng + ?Sized>(rng: &mut R) -> UnitQuaternion<f64> {
    loop {
        let v: [f64; 4] = [0; 4].map(|_| rng.sample(StandardNormal));
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-12 {
            return canonical(UnitQuaternion::new_unchecked(Quaternion::new(
                v[0] / norm,
                v[1] / norm,
                v[2] / norm,
                v[3] / norm,
            )));
        }
    }
}

/// The representative with w ≥ 0.
pub fn canonical(q: UnitQuaternion<f64>) -> UnitQuaternion<f64> {
    if q.w < 0.0 {
        UnitQuaternion::new_unchecked(-q.into_inner())
    } else {
        q
    }
}

/// (w, x, y, z), w ≥ 0.
pub fn to_wxyz(q: &UnitQuaternion<f64>) -> [f64; 4] {
    let q = canonical(*q);
    [q.w, q.i, q.j, q.k]
}

/// From (w, x, y, z); errors if the quaternion is not unit to 1e-4 (a sign of a wrong column
/// order or a corrupted file) — it is then renormalised exactly.
pub fn from_wxyz(v: [f64; 4]) -> anyhow::Result<UnitQuaternion<f64>> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !norm.is_finite() || (norm - 1.0).abs() > 1e-4 {
        bail!("quaternion {v:?} has norm {norm:.6}, not 1 (expected unit quaternions, scalar first: w,x,y,z)");
    }
    Ok(canonical(UnitQuaternion::from_quaternion(Quaternion::new(
        v[0], v[1], v[2], v[3],
    ))))
}

pub fn to_matrix(q: &UnitQuaternion<f64>) -> Rotation3<f64> {
    q.to_rotation_matrix()
}

/// Canonical quaternions of rotation matrices (projected onto SO(3) first).
pub fn from_matrices(rots: &[nalgebra::Matrix3<f64>]) -> Vec<UnitQuaternion<f64>> {
    rots.iter()
        .map(|r| canonical(UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix(r))))
        .collect()
}

/// The in-plane rotation by π: Rz(π) about the beam axis z, (w, x, y, z) = (0, 0, 0, 1).
///
/// It maps a detector-frame s = (x, y, z) to (−x, −y, z), the pixel point-reflected through the
/// beam, so the image at pose R turned by π in its plane ([`rotate_images_pi`]) is the image at
/// pose R · Rz(π). Images of a nearly centrosymmetric |F|² are alike under that turn, which is
/// why pose error resolves it per image and X-RAI compares each prediction with both.
pub fn rz_pi() -> UnitQuaternion<f64> {
    UnitQuaternion::new_unchecked(Quaternion::new(0.0, 0.0, 0.0, 1.0))
}

/// Images turned by π in their plane: `images` holds images of `pixels` values each, row-major
/// on a grid centred on the beam, and reversing each image's pixel order maps (row, column) to
/// (last row − row, last column − column), the point reflection through the centre. The turned
/// image at pose R is the image at pose R · [`rz_pi`].
pub fn rotate_images_pi(images: &[f32], pixels: usize) -> Vec<f32> {
    let mut out = images.to_vec();
    out.chunks_exact_mut(pixels).for_each(|c| c.reverse());
    out
}

/// Writes poses as CSV with header `w,x,y,z`.
pub fn write_poses_csv(path: &Path, poses: &[UnitQuaternion<f64>]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(out, "w,x,y,z")?;
    for q in poses {
        let [w, x, y, z] = to_wxyz(q);
        writeln!(out, "{w:.17e},{x:.17e},{y:.17e},{z:.17e}")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads poses from CSV (header `w,x,y,z`) or `.npy` (shape (n, 4), f64 or f32).
pub fn read_poses(path: &Path) -> anyhow::Result<Vec<UnitQuaternion<f64>>> {
    let name = path.display();
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read pose file {name}"))?;
        let npy = npyz::NpyFile::new(&bytes[..]).with_context(|| format!("{name}: not a valid .npy file"))?;
        let shape = npy.shape().to_vec();
        if shape.len() != 2 || shape[1] != 4 {
            bail!("{name}: poses must have shape (n, 4) — w,x,y,z per row — but the array has shape {shape:?}");
        }
        let values: Vec<f64> = match npy.dtype() {
            npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
                npy.into_vec::<f64>()?
            }
            npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
                npy.into_vec::<f32>()?.into_iter().map(f64::from).collect()
            }
            other => bail!("{name}: poses must be float32 or float64, found {}", other.descr()),
        };
        return values
            .chunks_exact(4)
            .enumerate()
            .map(|(i, v)| from_wxyz([v[0], v[1], v[2], v[3]]).with_context(|| format!("{name}: row {i}")))
            .collect();
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read pose file {name}"))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.replace(' ', "").eq_ignore_ascii_case("w,x,y,z") => {}
        Some((_, header)) => bail!("{name}, line 1: expected the header `w,x,y,z`, found {header:?}"),
        None => bail!("{name}: the pose file is empty (expected a header `w,x,y,z` and one row per image)"),
    }
    let poses: Vec<UnitQuaternion<f64>> = lines
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != 4 {
                bail!(
                    "{name}, line {}: expected 4 comma-separated numbers w,x,y,z, found {line:?}",
                    i + 1
                );
            }
            let mut v = [0.0; 4];
            for (slot, f) in v.iter_mut().zip(&fields) {
                *slot = f
                    .parse()
                    .with_context(|| format!("{name}, line {}: {f:?} is not a number", i + 1))?;
            }
            from_wxyz(v).with_context(|| format!("{name}, line {}", i + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    if poses.is_empty() {
        bail!("{name}: no poses after the header");
    }
    Ok(poses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_rotations_are_uniform_in_their_angle() {
        // For Haar-uniform rotations the angle ω has density (1 − cos ω)/π on [0, π], so
        // E[cos ω] = ∫ cos ω (1 − cos ω)/π dω = −1/2.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let mut mean_cos = 0.0;
        for _ in 0..n {
            let q = random_rotation(&mut rng);
            assert!(q.w >= 0.0);
            mean_cos += q.angle().cos() / n as f64;
        }
        assert!((mean_cos + 0.5).abs() < 0.02, "mean cos ω = {mean_cos}");
    }

    #[test]
    fn rz_pi_turns_the_detector_plane_by_half_a_turn() {
        let q = rz_pi();
        assert!((q.angle() - std::f64::consts::PI).abs() < 1e-15);
        assert_eq!(
            q * nalgebra::Vector3::new(1.0, 2.0, 3.0),
            nalgebra::Vector3::new(-1.0, -2.0, 3.0)
        );
        assert_eq!(
            *to_matrix(&q).matrix(),
            nalgebra::Matrix3::from_diagonal(&nalgebra::Vector3::new(-1.0, -1.0, 1.0))
        );
    }

    #[test]
    fn rotate_images_pi_reflects_each_image_through_its_centre() {
        // two 2 × 3 images: value = 10 · row + column (+ 100 for the second)
        let img: Vec<f32> = (0..2)
            .flat_map(|k| (0..6).map(move |i| (100 * k + 10 * (i / 3) + i % 3) as f32))
            .collect();
        let turned = rotate_images_pi(&img, 6);
        assert_eq!(turned[..6], [12.0, 11.0, 10.0, 2.0, 1.0, 0.0]);
        assert_eq!(turned[6..], [112.0, 111.0, 110.0, 102.0, 101.0, 100.0]);
        assert_eq!(rotate_images_pi(&turned, 6), img);
    }

    #[test]
    fn the_turned_image_is_the_image_at_r_times_rz_pi() {
        use crate::physics::slice::Slicer;
        use crate::volume::Volume;
        // a 6 × 6 detector grid centred on the beam, on a curved (Ewald-like) surface
        let side = 6;
        let s: Vec<[f64; 3]> = (0..side * side)
            .map(|i| {
                let (x, y) = ((i % side) as f64 - 2.5, (i / side) as f64 - 2.5);
                [0.01 * x, 0.01 * y, -0.0005 * (x * x + y * y)]
            })
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let m = 15;
        let vol = Volume {
            m,
            spacing: 0.01,
            data: (0..m * m * m).map(|_| rng.random::<f32>()).collect(),
        };
        let slicer = Slicer::with_scale(&vol, &s, vec![1.0; s.len()]).unwrap();
        for _ in 0..20 {
            let q = random_rotation(&mut rng);
            let turned = rotate_images_pi(&slicer.slice(&to_matrix(&q)), s.len());
            let at_r_pi = slicer.slice(&to_matrix(&(q * rz_pi())));
            for (a, b) in turned.iter().zip(&at_r_pi) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn quaternion_round_trip_and_sign() {
        let q = from_wxyz([-0.5, 0.5, 0.5, 0.5]).unwrap();
        assert_eq!(to_wxyz(&q), [0.5, -0.5, -0.5, -0.5]);
        assert!(from_wxyz([1.0, 1.0, 0.0, 0.0]).is_err());
    }
}
