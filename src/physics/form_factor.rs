//! form_factor
