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
    Ok(canonical(UnitQuaternion::from_quaternion(Quaternion::new(v[0], v[1], v[2], v[3]))))
}

pub fn to_matrix(q: &UnitQuaternion<f64>) -> Rotation3<f64> {
    q.to_rotation_matrix()
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
                bail!("{name}, line {}: expected 4 comma-separated numbers w,x,y,z, found {line:?}", i + 1);
            }
            let mut v = [0.0; 4];
            for (slot, f) in v.iter_mut().zip(&fields) {
                *slot = f.parse().with_context(|| format!("{name}, line {}: {f:?} is not a number", i + 1))?;
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
    fn quaternion_round_trip_and_sign() {
        let q = from_wxyz([-0.5, 0.5, 0.5, 0.5]).unwrap();
        assert_eq!(to_wxyz(&q), [0.5, -0.5, -0.5, -0.5]);
        assert!(from_wxyz([1.0, 1.0, 0.0, 0.0]).is_err());
    }
}
