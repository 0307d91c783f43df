//! An emulator's state as a JSON file: read once when the emulator starts, written after
//! every request that changed it.
//!
//! Writes go to `NAME.json.tmp` and are renamed over `NAME.json`, so a reader (a person,
//! or the next run after a crash) sees either the old state or the new one, never half a
//! file. One lock orders the writes: the state is snapshotted and written under it, so a
//! slower writer never puts an older snapshot over a newer one.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::SandboxError;

/// Where an emulator keeps its state.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    order: Mutex<()>,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile {
            path: path.into(),
            order: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<Value>, SandboxError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SandboxError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SandboxError::State {
                path: self.path.clone(),
                message: format!(
                    "line {}, column {}: {e}; fix the file or delete it to start empty",
                    e.line(),
                    e.column()
                ),
            })
    }

    /// Writes the state `snapshot` returns, atomically (see the module docs).
    pub fn save(&self, snapshot: impl FnOnce() -> Value) -> Result<(), SandboxError> {
        let _order = self.order.lock().unwrap();
        let value = snapshot();
        let io = |source| SandboxError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let text = serde_json::to_vec_pretty(&value).expect("JSON values serialize");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("sandbox/hubspot.json"));
        assert_eq!(file.load().unwrap(), None);
        file.save(|| json!({"objects": {"contacts": []}})).unwrap();
        assert_eq!(
            file.load().unwrap(),
            Some(json!({"objects": {"contacts": []}}))
        );
        assert!(!dir.path().join("sandbox/hubspot.json.tmp").exists());
        std::fs::write(file.path(), "{\n  \"objects\": [").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(
            err.contains("hubspot.json") && err.contains("line 2"),
            "{err}"
        );
    }
}
