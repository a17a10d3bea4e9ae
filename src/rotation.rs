//! rotations
