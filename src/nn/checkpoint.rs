//! Model files: one safetensors file holding the weights and, as JSON metadata, the network
//! and training configs, the metadata vocabularies, the spectrogram standardisation and the
//! training history. A checkpoint adds the best weights and Adam's moments so `fit` can
//! resume exactly; a saved model drops them. Writes are atomic (`io::save_tensors`).

use super::adam::Adam;
use super::config::{NetConfig, TrainConfig};
use super::data::Standardizer;
use super::metadata::{MetadataEncoder, MetadataOptions};
use super::model::Network;
use super::stack::StackingReport;
use super::train::{History, TrainState, set_params, snapshot};
use super::wide::RidgeReport;
use crate::error::{Error, Result};
use crate::io::{tensors_from_bytes, tensors_to_bytes};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "musrec.fusion";
const VERSION: &str = "1";

/// What a model file describes besides its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub net: NetConfig,
    pub train: TrainConfig,
    pub metadata_options: MetadataOptions,
    pub encoder: Option<MetadataEncoder>,
    pub standardizer: Standardizer,
    /// How the linear part's penalties were chosen (kinds with one).
    #[serde(default)]
    pub ridge: Option<RidgeReport>,
    /// How a stacked fusion model combined its audio network and metadata ridge; None until
    /// the combination (a checkpoint written during training holds the audio network alone).
    #[serde(default)]
    pub stacking: Option<StackingReport>,
}

#[derive(Serialize, Deserialize)]
struct StateSummary {
    epochs_done: usize,
    history: History,
    best_epoch: Option<usize>,
    best_validation: Option<f64>,
    adam_step: u64,
    stopped_early: bool,
    #[serde(default)]
    lr_decays: u32,
    #[serde(default)]
    last_decay_epoch: Option<usize>,
}

/// Write `net` with `spec` and `state`; `with_training_state` adds what resuming needs.
pub fn save(path: &Path, net: &Network, spec: &ModelSpec, state: &TrainState, with_training_state: bool) -> Result<()> {
    let buffer = to_bytes(net, spec, state, with_training_state)?;
    crate::io::write_atomic(path, |w| w.write_all(&buffer))
}

/// The bytes [`save`] writes (a safetensors file).
pub fn to_bytes(net: &Network, spec: &ModelSpec, state: &TrainState, with_training_state: bool) -> Result<Vec<u8>> {
    let names: Vec<&str> = net.params.vars.iter().map(|(n, _)| n.as_str()).collect();
    let shapes: Vec<Vec<usize>> = net.params.vars.iter().map(|(_, v)| v.dims().to_vec()).collect();
    let current = snapshot(net)?;
    let mut owned: Vec<(String, usize, &[f32])> = Vec::new();
    for (k, values) in current.iter().enumerate() {
        owned.push((format!("param.{}", names[k]), k, values));
    }
    if with_training_state {
        if let Some(best) = &state.best_params {
            for (k, values) in best.iter().enumerate() {
                owned.push((format!("best.{}", names[k]), k, values));
            }
        }
        for (k, values) in state.adam.m.iter().enumerate() {
            owned.push((format!("adam_m.{}", names[k]), k, values));
        }
        for (k, values) in state.adam.v.iter().enumerate() {
            owned.push((format!("adam_v.{}", names[k]), k, values));
        }
    }
    let tensors: Vec<(&str, &[usize], &[f32])> = owned
        .iter()
        .map(|(name, k, values)| (name.as_str(), shapes[*k].as_slice(), *values))
        .collect();
    let summary = StateSummary {
        epochs_done: state.epochs_done,
        history: state.history.clone(),
        best_epoch: state.best_epoch,
        best_validation: state.best_validation,
        adam_step: if with_training_state { state.adam.step } else { 0 },
        stopped_early: state.stopped_early,
        lr_decays: state.lr_decays,
        last_decay_epoch: state.last_decay_epoch,
    };
    let mut metadata = HashMap::new();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("version".into(), VERSION.into());
    metadata.insert("spec".into(), to_json(spec));
    metadata.insert("state".into(), to_json(&summary));
    metadata.insert("training_state".into(), with_training_state.to_string());
    tensors_to_bytes(&tensors, metadata)
}

/// Read a model file: the network (current weights), its spec and its training state. A file
/// without training state gives a state with history but no optimiser moments.
pub fn load(path: &Path) -> Result<(Network, ModelSpec, TrainState)> {
    let buffer = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&buffer, path)
}

/// [`load`] from the bytes of a model file; `path` names them in errors.
pub fn from_bytes(buffer: &[u8], path: &Path) -> Result<(Network, ModelSpec, TrainState)> {
    let (mut tensors, metadata) = tensors_from_bytes(buffer, path)?;
    let bad = |msg: String| Error::format(path, msg);
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad("not a musrec fusion model file".into()));
    }
    if metadata.get("version").map(String::as_str) != Some(VERSION) {
        return Err(bad(format!(
            "unsupported model file version {:?}",
            metadata.get("version")
        )));
    }
    let field = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| bad(format!("missing {key:?} metadata")))
    };
    let mut spec: ModelSpec = serde_json::from_str(field("spec")?).map_err(|e| bad(format!("bad spec: {e}")))?;
    if let Some(encoder) = &mut spec.encoder {
        encoder.reindex();
    }
    let summary: StateSummary = serde_json::from_str(field("state")?).map_err(|e| bad(format!("bad state: {e}")))?;
    spec.net
        .validate()
        .map_err(|e| bad(format!("bad network config: {e}")))?;
    let net = Network::new(spec.net.clone(), spec.train.seed)?;
    let mut take = |prefix: &str, required: bool| -> Result<Option<Vec<Vec<f32>>>> {
        let mut out = Vec::new();
        for (name, var) in &net.params.vars {
            match tensors.remove(&format!("{prefix}.{name}")) {
                Some(t) if t.shape == var.dims() => out.push(t.data),
                Some(t) => {
                    return Err(bad(format!(
                        "{prefix}.{name} has shape {:?}, expected {:?}",
                        t.shape,
                        var.dims()
                    )));
                }
                None if required => return Err(bad(format!("missing tensor {prefix}.{name}"))),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    };
    let params = take("param", true)?.ok_or_else(|| bad("missing weights".into()))?;
    set_params(&net, &params)?;
    let best_params = take("best", false)?;
    let adam = match (take("adam_m", false)?, take("adam_v", false)?) {
        (Some(m), Some(v)) => Adam {
            step: summary.adam_step,
            m,
            v,
        },
        _ => Adam::default(),
    };
    let state = TrainState {
        epochs_done: summary.epochs_done,
        history: summary.history,
        best_epoch: summary.best_epoch,
        best_validation: summary.best_validation,
        best_params,
        adam,
        stopped_early: summary.stopped_early,
        lr_decays: summary.lr_decays,
        last_decay_epoch: summary.last_decay_epoch,
    };
    Ok((net, spec, state))
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model spec serialises")
}
