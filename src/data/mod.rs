//! data sources
