//! File-system helpers shared by every reader and writer of user files (scripts, checkpoints,
//! weights, data, logs, golden files).
//!
//! - Reading: [`open_regular`] / [`read_regular`] / [`read_regular_to_string`] open only regular
//!   files (a FIFO, device, socket or directory is refused with a message saying what it is, and
//!   opening never blocks), [`check_regular`] checks a path without opening it.
//! - Writing: [`write_atomic`] / [`write_atomic_with`] go through a temp file beside the target
//!   (named by [`temp_path`]), fsync and rename, so a crash keeps the previous file;
//!   [`remove_stale_temps`] removes the temp files interrupted saves left behind, and nothing else.
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a file that is not a regular file is, in words.
fn kind_name(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn not_regular(ft: &std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file (it is {}); lt reads only regular files", kind_name(ft)),
    )
}

/// Fails unless `path` is a regular file (symbolic links are followed). Never opens it, so a FIFO
/// cannot block. The error says what the path is instead.
pub fn check_regular(path: &Path) -> io::Result<std::fs::Metadata> {
    let md = std::fs::metadata(path)?;
    if !md.is_file() {
        return Err(not_regular(&md.file_type()));
    }
    Ok(md)
}

/// Opens a regular file for reading. The file is opened non-blocking (so a FIFO opens at once
/// instead of waiting for a writer), checked on the open handle (no race with a rename), and
/// refused unless it is a regular file; then it reads normally.
pub fn open_regular(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    let f = {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
        let ft = f.metadata()?.file_type();
        if !ft.is_file() {
            return Err(not_regular(&ft));
        }
        use std::os::unix::io::AsRawFd;
        let fd = f.as_raw_fd();
        // SAFETY: `fd` is the open descriptor owned by `f`; F_GETFL/F_SETFL only change its flags.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        f
    };
    #[cfg(not(unix))]
    let f = {
        check_regular(path)?;
        File::open(path)?
    };
    Ok(f)
}

/// The whole content of a regular file (see [`open_regular`]).
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// The whole content of a regular UTF-8 text file (see [`open_regular`]).
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// The temp file an atomic write of `path` goes through: `.{name}.tmp.{pid}` beside it (hidden,
/// and tagged with the writer's process id so [`remove_stale_temps`] can tell when its writer is
/// gone).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "weights".into());
    dir.join(format!(".{name}.tmp.{}", std::process::id()))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temp file whose writer is not a live process on this machine is removed once it has not
/// been modified for this long. A live writer touches its temp file with every buffer it writes;
/// the grace covers a writer on another machine sharing the folder (whose process id means
/// nothing here) that is between its last write and its rename (fsync).
pub const STALE_TEMP_DEAD_WRITER: Duration = Duration::from_secs(10 * 60);
/// A temp file untouched for this long is removed even if a process with its id is alive: the id
/// was reused, or the writer has been stuck for a day (its save then fails cleanly at the rename).
pub const STALE_TEMP_ANY_WRITER: Duration = Duration::from_secs(24 * 60 * 60);

/// The writer's process id when `name` is a temp file name of [`temp_path`] for a target whose
/// name ends with `suffix` (`.{x}{suffix}.tmp.{pid}`).
fn temp_owner(name: &str, suffix: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let (target, pid) = rest.rsplit_once(".tmp.")?;
    if target.len() <= suffix.len()
        || !target.ends_with(suffix)
        || pid.is_empty()
        || !pid.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    pid.parse::<i32>().ok().filter(|p| *p > 0)
}

fn process_alive(pid: i32) -> bool {
    if pid as u32 == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks whether the process exists; nothing is sent.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Removes, in `dir`, the temp files that interrupted atomic writes of files named `*{suffix}`
/// left behind: regular files (not links) named by [`temp_path`]'s pattern whose writer is not a
/// live process and that were not modified for [`STALE_TEMP_DEAD_WRITER`], or that were not
/// modified for [`STALE_TEMP_ANY_WRITER`]. No other file is ever touched. Returns the removed paths.
pub fn remove_stale_temps(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return removed };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| temp_owner(n, suffix)) else { continue };
        // DirEntry metadata does not follow links: a link or a folder with this name is left alone
        let Ok(md) = e.metadata() else { continue };
        if !md.file_type().is_file() {
            continue;
        }
        let Some(age) = md.modified().ok().and_then(|m| m.elapsed().ok()) else { continue };
        let stale = age >= STALE_TEMP_ANY_WRITER || (age >= STALE_TEMP_DEAD_WRITER && !process_alive(pid));
        if stale && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

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
    let dir = parent_dir(path);
    let tmp = temp_path(path);
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
