//! WMF model files: safetensors with tensors `user_factors` (n_users x factors) and
//! `item_factors` (n_items x factors), float32, and metadata `format` = "musrec.wmf",
//! `format_version` = "1", `params` = the hyperparameters as JSON. Readable by any
//! safetensors reader (Python `safetensors`, torch, candle).

use super::{WmfModel, WmfParams};
use crate::error::{Error, Result};
use crate::io::{Tensor, load_tensors, save_tensors};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "musrec.wmf";
const FORMAT_VERSION: &str = "1";

pub fn save(model: &WmfModel, path: &Path) -> Result<()> {
    let k = model.params.factors;
    let params = serde_json::to_string(&model.params).map_err(|e| Error::invalid(e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("params".to_string(), params),
    ]);
    save_tensors(
        path,
        &[
            ("user_factors", &[model.n_users, k], &model.user_factors),
            ("item_factors", &[model.n_items, k], &model.item_factors),
        ],
        metadata,
    )
}

pub fn load(path: &Path) -> Result<WmfModel> {
    let (mut tensors, metadata) = load_tensors(path)?;
    let bad = |msg: String| Error::format(path, msg);
    match metadata.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        other => return Err(bad(format!("not a musrec WMF model (format = {other:?})"))),
    }
    if metadata.get("format_version").map(String::as_str) != Some(FORMAT_VERSION) {
        return Err(bad(format!(
            "unsupported WMF format version {:?} (this musrec reads {FORMAT_VERSION})",
            metadata.get("format_version")
        )));
    }
    let params: WmfParams = serde_json::from_str(metadata.get("params").map_or("", String::as_str))
        .map_err(|e| bad(format!("unreadable hyperparameters: {e}")))?;
    let mut take = |name: &str| -> Result<Tensor> {
        let t = tensors
            .remove(name)
            .ok_or_else(|| bad(format!("missing tensor {name}")))?;
        if t.shape.len() != 2 || t.shape[1] != params.factors {
            return Err(bad(format!(
                "{name} has shape {:?}, expected (n, {})",
                t.shape, params.factors
            )));
        }
        if t.data.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("{name} contains NaN or infinite values")));
        }
        Ok(t)
    };
    let users = take("user_factors")?;
    let items = take("item_factors")?;
    Ok(WmfModel {
        params,
        n_users: users.shape[0],
        n_items: items.shape[0],
        user_factors: users.data,
        item_factors: items.data,
    })
}
