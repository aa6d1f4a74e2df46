//! The `serve --ready-file` of every service binary: once listening, the service writes where
//! it listens as JSON, for scripts and tests that start it on port 0.

use anyhow::Context as _;
use std::path::Path;

/// Writes `ready` (pretty JSON) to `path` whole: to a temporary file beside it, then renamed, so
/// that a script polling for the file never reads it half written.
pub fn write(path: &Path, ready: &serde_json::Value) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let body = serde_json::to_vec_pretty(ready)?;
    std::fs::write(&partial, body)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ready_file_is_the_json_given() {
        let dir = std::env::temp_dir().join(format!("ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ready.json");
        super::write(&path, &serde_json::json!({"url": "http://127.0.0.1:1"})).expect("written");
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(read["url"], "http://127.0.0.1:1");
        assert!(!dir.join("ready.json.partial").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
