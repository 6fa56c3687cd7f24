//! File-system helpers shared by every writer of user data (checkpoints, weights, logs, golden files).
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| e.to_string())?;
        f.write_all(bytes).map_err(|e| e.to_string())
    })
}

/// Like [`write_atomic`], with `write` creating the temp file it is given (so large files can be
/// streamed rather than assembled in memory first).
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "weights".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("cannot {what} {}: {e}", path.display());
    let result = (|| {
        write(&tmp).map_err(|e| fail("write", &e))?;
        let f = std::fs::File::open(&tmp).map_err(|e| fail("write", &e))?;
        f.sync_all().map_err(|e| fail("sync", &e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| fail("rename a temp file onto", &e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
