//! The report: Table 1 rows as CSV/Parquet and Markdown ([`table`]), cost against dataset size
//! ([`scaling`]), and the figures ([`plots`], PNG + SVG with an embedded font).

pub mod plots;
pub mod scaling;
pub mod table;
