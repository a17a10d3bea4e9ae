//! The physics of SPI image formation, in one place (DESIGN.md, "Physics conventions").
//!
//! Units: lengths in Å, scattering vectors s in Å⁻¹ with |s| = 2 sin θ / λ (no 2π), atomic phase
//! exp(+2πi s·r). A pose R maps detector-frame s into the molecule frame: image i samples the
//! volume at R_i s_p.

pub mod acquisition;
pub mod beam;
pub mod detector;
pub mod form_factor;
pub mod molecule;
pub mod noise;
pub mod slice;
pub mod symmetry;
pub mod transform;
mod wk1995_table;
