//! Files: atomic writes (models and caches go to a temporary file in the target's directory,
//! flushed to disk, then renamed over the target, so a crash never leaves a half-written file
//! under the real name) and named f32 tensors in safetensors format with a string metadata map.

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where `path` is written before the rename: a hidden file in the same directory (so the
/// rename is atomic), which must exist.
pub fn temp_sibling(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::NotFound(dir));
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("not a file path: {}", path.display())))?;
    // Unique per process and per write, so concurrent writers (processes or threads) of the
    // same target never share a temporary file; the last rename wins whole.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    Ok(dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    )))
}

/// Write `path` atomically with whatever `write` produces.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_sibling(path)?;
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// A named f32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Write f32 tensors and string metadata as one safetensors file, atomically.
pub fn save_tensors(
    path: &Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let buffer = tensors_to_bytes(tensors, metadata)?;
    write_atomic(path, |w| w.write_all(&buffer))
}

/// f32 tensors and string metadata as the bytes of a safetensors file (what
/// [`save_tensors`] writes; also how models pickle).
pub fn tensors_to_bytes(tensors: &[(&str, &[usize], &[f32])], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), raw) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.to_vec(), raw)
            .map_err(|e| Error::invalid(format!("tensor {name}: {e}")))?;
        views.push((*name, view));
    }
    let buffer = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| Error::invalid(format!("cannot serialise: {e}")))?;
    canonical_header(buffer)
}

/// The same file with the metadata keys of its header in sorted order. safetensors writes
/// them from a HashMap, in an order that changes from one map to the next; sorted, equal
/// contents are equal bytes (a feature-cache shard written on a Ray worker is byte for byte
/// the one a local extraction writes, and a model pickles to the same bytes every time).
fn canonical_header(buffer: Vec<u8>) -> Result<Vec<u8>> {
    use serde_json::{Map, Value};
    let bad = |e: serde_json::Error| Error::invalid(format!("cannot serialise the header: {e}"));
    let len = u64::from_le_bytes(buffer[..8].try_into().expect("safetensors writes an 8-byte length")) as usize;
    let header: Map<String, Value> = serde_json::from_slice(&buffer[8..8 + len]).map_err(bad)?;
    let mut out = Map::new();
    if let Some(Value::Object(meta)) = header.get("__metadata__") {
        let sorted: std::collections::BTreeMap<&String, &Value> = meta.iter().collect();
        out.insert("__metadata__".into(), serde_json::to_value(sorted).map_err(bad)?);
    }
    out.extend(header.into_iter().filter(|(k, _)| k != "__metadata__"));
    let mut text = serde_json::to_vec(&out).map_err(bad)?;
    // safetensors pads the header with spaces so the data starts 8-byte aligned.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut file = Vec::with_capacity(8 + text.len() + buffer.len() - 8 - len);
    file.extend_from_slice(&(text.len() as u64).to_le_bytes());
    file.extend_from_slice(&text);
    file.extend_from_slice(&buffer[8 + len..]);
    Ok(file)
}

/// Read every tensor (all must be f32) and the metadata map of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let buffer = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    tensors_from_bytes(&buffer, path)
}

/// [`load_tensors`] from the bytes of a file; `source` names them in errors.
pub fn tensors_from_bytes(buffer: &[u8], source: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let path = source;
    let bad = |e: safetensors::SafeTensorError| Error::format(path, format!("not a valid safetensors file ({e})"));
    let (_, header) = SafeTensors::read_metadata(buffer).map_err(bad)?;
    let metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let file = SafeTensors::deserialize(buffer).map_err(bad)?;
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::format(
                path,
                format!("tensor {name} is {:?}, expected F32", view.dtype()),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("musrec-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("model.bin");
        write_atomic(&target, |w| w.write_all(b"hello")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        // A failing writer leaves the previous file intact and no temp file behind.
        let err = write_atomic(&target, |_| Err(std::io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn equal_contents_are_equal_bytes() {
        let meta = || {
            (0..20)
                .map(|i| (format!("key{i}"), format!("value{i}")))
                .collect::<HashMap<_, _>>()
        };
        let tensors: &[(&str, &[usize], &[f32])] = &[("b", &[2], &[1.0, 2.0]), ("a", &[1, 3], &[3.0, 4.0, 5.0])];
        let first = tensors_to_bytes(tensors, meta()).unwrap();
        for _ in 0..5 {
            assert_eq!(tensors_to_bytes(tensors, meta()).unwrap(), first);
        }
        let (read, read_meta) = tensors_from_bytes(&first, Path::new("x")).unwrap();
        assert_eq!(read_meta, meta());
        assert_eq!(read["a"].data, vec![3.0, 4.0, 5.0]);
        assert_eq!(read["b"].shape, vec![2]);
    }

    #[test]
    fn missing_directory_is_not_found() {
        let err = write_atomic(Path::new("/nonexistent-musrec-dir/x.bin"), |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)));
    }
}
