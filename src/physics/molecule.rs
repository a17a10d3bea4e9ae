//! molecule
