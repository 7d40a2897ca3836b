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

#[cfg(test)]
mod tests;

pub use config::{ModelKind, NetConfig, StopMetric, TrainConfig};
pub use estimator::{Fitted, FusionModel, Songs, Validation};
pub use metadata::{MetadataEncoder, MetadataOptions, SongMetadata};
pub use train::History;
pub use wide::RidgeReport;
