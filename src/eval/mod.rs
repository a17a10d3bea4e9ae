//! Evaluation: pose error, phasing, map alignment, FSC. Knows nothing of how a volume or pose was made.
