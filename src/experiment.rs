//! The presets of the paper's experiment (`musrec reproduce --preset tiny|small|paper`): the
//! synthetic world (the world preset of the same name, at the experiment's audio settings),
//! the number of WMF factors, the network sizes, the training length and the list lengths N
//! of Figure 2. Defined once here; the Python front reads them from here.

use crate::error::{Error, Result};
use crate::synthetic::world::WorldFilesConfig;

/// The names of the presets, smallest first.
pub const PRESET_NAMES: [&str; 3] = ["tiny", "small", "paper"];

/// The network and training settings a preset changes from the FusionModel's defaults
/// (`None`: the default). Serialised, it is the Pipeline's `model` dict of keyword settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelSizes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv_channels: Option<[usize; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lstm_hidden: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_hidden: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_dim: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artist_dim: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year_dim: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
}

/// The Pipeline settings of a preset: serialised, its keyword arguments.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PipelineSettings {
    /// The size real data is de-sparsified to (`None`: the world's size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_users: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_songs: Option<usize>,
    pub n_factors: usize,
    pub model: ModelSizes,
    /// The list lengths of Figure 2.
    #[serde(rename = "N")]
    pub n: Vec<usize>,
}

/// One preset of the experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentPreset {
    pub name: &'static str,
    /// The synthetic world: the world preset of the same name with the paper's 8 kHz audio.
    pub world: WorldFilesConfig,
    pub pipeline: PipelineSettings,
}

/// The experiment's audio: 8 kHz (the paper's), 4 s per song (three 3-second excerpts).
const SAMPLE_RATE: u32 = 8000;
const DURATION: f64 = 4.0;

impl ExperimentPreset {
    /// `tiny` (for tests: 600 users x 800 songs, 32 factors, small networks, at most 30
    /// epochs), `small` (2,000 x 5,000, 64 factors, mid-size networks, at most 50 epochs) or
    /// `paper` (de-sparsified to the paper's 10,000 x 50,000, 100 factors, the full networks).
    pub fn named(name: &str) -> Result<Self> {
        let (name, pipeline) = match name {
            "tiny" => (
                "tiny",
                PipelineSettings {
                    n_users: None,
                    n_songs: None,
                    n_factors: 32,
                    model: ModelSizes {
                        conv_channels: Some([32; 3]),
                        lstm_hidden: Some(32),
                        mlp_hidden: Some(64),
                        tag_dim: Some(16),
                        artist_dim: Some(16),
                        year_dim: Some(8),
                        max_epochs: Some(30),
                        patience: Some(5),
                    },
                    n: vec![5, 10, 20],
                },
            ),
            "small" => (
                "small",
                PipelineSettings {
                    n_users: None,
                    n_songs: None,
                    n_factors: 64,
                    model: ModelSizes {
                        conv_channels: Some([64; 3]),
                        lstm_hidden: Some(64),
                        mlp_hidden: Some(256),
                        tag_dim: Some(32),
                        artist_dim: Some(32),
                        year_dim: None,
                        max_epochs: Some(50),
                        patience: Some(8),
                    },
                    n: vec![5, 10, 20, 50],
                },
            ),
            "paper" => (
                "paper",
                PipelineSettings {
                    n_users: Some(10_000),
                    n_songs: Some(50_000),
                    n_factors: 100,
                    model: ModelSizes::default(),
                    n: vec![5, 10, 20, 50],
                },
            ),
            other => {
                return Err(Error::invalid(format!(
                    "unknown preset {other:?}; expected one of {}",
                    PRESET_NAMES.join(", ")
                )));
            }
        };
        let world = WorldFilesConfig {
            sample_rate: SAMPLE_RATE,
            duration: DURATION,
            ..WorldFilesConfig::preset(name)?
        };
        Ok(ExperimentPreset { name, world, pipeline })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_its_world_is_the_world_preset_of_its_name() {
        for name in PRESET_NAMES {
            let preset = ExperimentPreset::named(name).unwrap();
            preset.world.validate().unwrap();
            assert_eq!(
                preset.world.listening,
                WorldFilesConfig::preset(name).unwrap().listening
            );
        }
        let tiny = ExperimentPreset::named("tiny").unwrap();
        assert_eq!((tiny.world.listening.n_users, tiny.world.listening.n_songs), (600, 800));
        let err = ExperimentPreset::named("huge").unwrap_err().to_string();
        assert!(
            err.contains("unknown preset") && err.contains("tiny, small, paper"),
            "{err}"
        );
    }
}
