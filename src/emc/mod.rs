//! EMC: expand–maximize–compress with exhaustive orientation search (Loh & Elser 2009; Ayyer et al. 2016).
