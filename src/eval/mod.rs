//! Evaluation, in one place: the ranking metrics (`metrics`), Table 1's vector errors
//! (`vector_errors`), the per-user hold-out of interactions (`split`), the experiment's song
//! split (`songs`, through numpy's generator in `numpy_rng`) and the reference rows that use
//! no model, the artist-popularity ranking and the training mean (`baselines`).

pub mod baselines;
pub mod metrics;
pub mod numpy_rng;
pub mod songs;
pub mod split;
pub mod vector_errors;
