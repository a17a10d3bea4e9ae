//! MRC2014 maps.
