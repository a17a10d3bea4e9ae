//! beam
