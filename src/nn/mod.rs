//! Stage 2: networks that predict a song's WMF vector from its content — log-Mel audio and
//! metadata — so songs nobody has played can be recommended. The paper's fusion model and
//! its four baselines in candle, trained with Adam and early stopping, resumable from
//! checkpoints, saved as safetensors.

mod adam;
mod checkpoint;
mod config;
mod data;
mod estimator;
mod layers;
mod metadata;
mod model;
mod ops;
mod stack;
mod train;
pub mod wide;
mod winograd;
mod wpe;

#[cfg(test)]
mod tests;

pub use config::{ModelKind, NetConfig, Objective, StopMetric, TrainConfig};
pub use estimator::{Fitted, FusionModel, Songs, Validation};
pub use metadata::{MetadataEncoder, MetadataOptions, SongMetadata, TagWeighting};
pub use train::History;
pub use wide::RidgeReport;
pub use wpe::SongMetric;

/// Revision of what training computes for fixed settings and data: raised whenever a change
/// to the code (not to a setting) changes the fitted model, so caches keyed on the settings
/// (the pipeline's trained stages) retrain. 2: the artists' own ridge penalty. 3: Winograd
/// convolutions (rounding differs from the direct product).
pub const TRAINING_REVISION: u32 = 3;
