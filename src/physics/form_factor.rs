//! Atomic scattering factors f0 of Waasmaier & Kirfel (1995): five Gaussians plus a constant,
//! f0(s) = Σ_k a_k exp(−b_k (sin θ/λ)²) + c, evaluated at sin θ/λ = |s| / 2 (|s| = 2 sin θ / λ).
//!
//! The coefficients (211 neutral atoms and ions, H to Cf) are in `wk1995_table.rs`, generated
//! from the `xraydb` package's copy of the published table by `tools/gen_wk_table.py`.

use super::wk1995_table::WK1995;

/// One scattering species (a neutral element or an ion) with its WK1995 coefficients.
#[derive(Clone, Debug, PartialEq)]
pub struct FormFactor {
    /// Species label as in the table: `"C"`, `"Fe2+"`, `"Cl1-"`.
    pub label: &'static str,
    pub atomic_number: u8,
    a: [f64; 5],
    b: [f64; 5],
    c: f64,
}

impl FormFactor {
    /// Looks up a species by its label (case-insensitive element symbol, optional charge as
    /// `2+`, `+2`, `1-`; charge 0 means the neutral atom).
    pub fn lookup(element: &str, charge: i32) -> Option<FormFactor> {
        let symbol = normalise_symbol(element)?;
        let label = match charge {
            0 => symbol.clone(),
            q if q > 0 => format!("{symbol}{q}+"),
            q => format!("{symbol}{}-", -q),
        };
        WK1995
            .iter()
            .find(|row| row.0 == label)
            .map(|&(label, z, a, b, c)| FormFactor {
                label,
                atomic_number: z,
                a,
                b,
                c,
            })
    }

    /// f0 at sin θ / λ in Å⁻¹.
    pub fn at_stol(&self, stol: f64) -> f64 {
        let q2 = stol * stol;
        self.c
            + self
                .a
                .iter()
                .zip(&self.b)
                .map(|(a, b)| a * (-b * q2).exp())
                .sum::<f64>()
    }

    /// The six terms as (weight, b) with f0(|s|) = Σ weight · exp(−b |s|²/4); the constant is
    /// the term with b = 0. Each is the transform of a Gaussian density of variance b/(8π²).
    pub fn gaussians(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.a
            .iter()
            .copied()
            .zip(self.b.iter().copied())
            .chain(std::iter::once((self.c, 0.0)))
    }

    /// f0 at a scattering vector of length |s| = 2 sin θ / λ (Å⁻¹), the project's convention.
    pub fn at_s(&self, s_norm: f64) -> f64 {
        self.at_stol(0.5 * s_norm)
    }
}

/// "FE" / "fe" / "Fe" → "Fe"; None for anything that is not one or two letters.
fn normalise_symbol(element: &str) -> Option<String> {
    let e = element.trim();
    let mut chars = e.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() || e.len() > 2 || !chars.all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut s = first.to_ascii_uppercase().to_string();
    s.extend(e.chars().skip(1).map(|c| c.to_ascii_lowercase()));
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_atoms_scatter_their_electron_count_forward() {
        // f0(0) = Z for a neutral atom; the WK fits honour it to ~1e-3.
        for (sym, z) in [
            ("H", 1.0),
            ("C", 6.0),
            ("N", 7.0),
            ("O", 8.0),
            ("S", 16.0),
            ("Fe", 26.0),
        ] {
            let f = FormFactor::lookup(sym, 0).unwrap();
            assert!((f.at_s(0.0) - z).abs() < 2e-3 * z, "{sym}: {}", f.at_s(0.0));
        }
        let fe3 = FormFactor::lookup("FE", 3).unwrap();
        assert_eq!(fe3.label, "Fe3+");
        assert!((fe3.at_s(0.0) - 23.0).abs() < 0.05);
    }

    #[test]
    fn unknown_symbols_are_rejected() {
        assert!(FormFactor::lookup("Xx", 0).is_none());
        assert!(FormFactor::lookup("C7", 0).is_none());
        assert!(FormFactor::lookup("", 0).is_none());
        assert!(FormFactor::lookup("C", 9).is_none());
    }
}
