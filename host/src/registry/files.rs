//! Reading files in the plugins directory, which anyone who can write there
//! controls: regular files only (a symlink is followed, and its target must
//! be one), opened without blocking so that a FIFO or device swapped in is
//! refused instead of hanging a thread, and bounded in size. Callers run
//! this on the blocking pool, never on the async workers.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The largest component file read (`NAME.wasm`).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// The largest manifest read (`NAME.toml`).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Reads `path` whole; `Ok(None)` when it does not exist. Anything else that
/// is not a readable regular file of at most `max` bytes is an error that
/// says what it is.
pub fn read_regular(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot open: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: cannot stat: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file (a directory, FIFO, socket or device is never read)",
            path.display()
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "{}: {} bytes, over the limit of {max}",
            path.display(),
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "{}: grew past the limit of {max} bytes while being read",
            path.display()
        ));
    }
    Ok(Some(bytes))
}

/// A manifest's text: `Ok(None)` when there is no manifest file. A file
/// that exists but cannot be used (unreadable, not UTF-8, empty, not a
/// regular file) is an error: it never means "the defaults", which include
/// `auth = none`.
pub fn read_manifest(path: &Path) -> Result<Option<String>, String> {
    let Some(bytes) = read_regular(path, MAX_MANIFEST_BYTES)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{}: not valid UTF-8 ({e})", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!(
            "{}: empty; write the connector's settings, or remove the file to use the host defaults",
            path.display()
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("a.toml"), "[push]\n").unwrap();
        assert_eq!(
            read_manifest(&p("a.toml")).unwrap().as_deref(),
            Some("[push]\n")
        );
        assert_eq!(read_manifest(&p("missing.toml")).unwrap(), None);
        std::fs::write(p("empty.toml"), " \n").unwrap();
        assert!(
            read_manifest(&p("empty.toml"))
                .unwrap_err()
                .contains("empty")
        );
        std::fs::write(p("bad.toml"), b"auth = \xff\n").unwrap();
        assert!(read_manifest(&p("bad.toml")).unwrap_err().contains("UTF-8"));
        std::fs::create_dir(p("dir.toml")).unwrap();
        assert!(
            read_manifest(&p("dir.toml"))
                .unwrap_err()
                .contains("not a regular file")
        );
        std::fs::write(p("big.wasm"), vec![0u8; 100]).unwrap();
        assert!(
            read_regular(&p("big.wasm"), 99)
                .unwrap_err()
                .contains("over the limit")
        );
        std::os::unix::fs::symlink(p("a.toml"), p("link.toml")).unwrap();
        assert!(read_manifest(&p("link.toml")).unwrap().is_some());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stuck.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_regular(&fifo, MAX_COMPONENT_BYTES).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
