//! Secrets: the one way every setting that names a secret reads it.
//!
//! A secret comes from an environment variable (`*_env`) or a file
//! (`*_file`, relative to the file that names it). One rule for all of
//! them: surrounding ASCII whitespace is removed (the newline `echo` or an
//! editor leaves at the end of a file, a stray space in an `export`), and
//! what remains must not be empty. An unset or empty variable, or a file
//! that is missing, unreadable, not a regular file, empty or over 64 KiB, is
//! an error that names it: a setting that names a secret never silently
//! means "no secret", so nothing fails open.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest secret file read (certificates and keys are read elsewhere).
pub const MAX_SECRET_FILE: u64 = 64 << 10;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable, by name.
    Env(String),
    /// A file; a relative path is resolved against a base directory.
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set; export it before starting inlet")]
    Unset(String),
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(String),
    #[error("environment variable {0} is empty; set it to the secret")]
    EmptyVar(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is larger than {MAX_SECRET_FILE} bytes; is it the right file?")]
    TooLarge(PathBuf),
    #[error("{0} is not valid UTF-8")]
    FileNotUnicode(PathBuf),
    #[error("{0} is empty")]
    EmptyFile(PathBuf),
}

/// A secret's value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value as bytes (MAC keys, tokens).
    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl SecretRef {
    /// Reads the secret now; `base` is the directory relative file paths
    /// start from.
    pub fn read(&self, base: &Path) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::Unset(var.clone()));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::NotUnicode(var.clone()));
                }
            },
            SecretRef::File(file) => read_file(&base.join(file))?,
        };
        let trimmed = value.trim_ascii();
        if trimmed.is_empty() {
            return Err(match self {
                SecretRef::Env(var) => SecretError::EmptyVar(var.clone()),
                SecretRef::File(file) => SecretError::EmptyFile(base.join(file)),
            });
        }
        Ok(Secret(trimmed.to_string()))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => write!(f, "environment variable {var}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Reads a regular file of at most [`MAX_SECRET_FILE`] bytes (never blocks
/// on a FIFO or a device).
fn read_file(path: &Path) -> Result<String, SecretError> {
    let read_err = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Opened without blocking and checked as opened: a FIFO swapped in
    // (secret files can sit in the plugins directory) never hangs a thread.
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile(path.to_path_buf()));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge(path.to_path_buf()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge(path.to_path_buf()));
    }
    String::from_utf8(bytes).map_err(|_| SecretError::FileNotUnicode(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_trimmed_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "  s3cret\r\n").unwrap();
        std::fs::write(dir.path().join("blank"), " \n").unwrap();
        let read = |name: &str| SecretRef::File(name.into()).read(dir.path());
        assert_eq!(read("token").unwrap().expose(), "s3cret");
        assert!(matches!(read("blank"), Err(SecretError::EmptyFile(_))));
        assert!(matches!(read("missing"), Err(SecretError::Read { .. })));
        assert!(matches!(read("."), Err(SecretError::NotAFile(_))));
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(read("fifo"), Err(SecretError::NotAFile(_))));
        std::fs::write(dir.path().join("big"), vec![b'x'; 70_000]).unwrap();
        assert!(matches!(read("big"), Err(SecretError::TooLarge(_))));
        let message = read("blank").unwrap_err().to_string();
        assert!(
            message.contains("blank") && message.contains("empty"),
            "{message}"
        );
    }

    #[test]
    fn unset_and_empty_variables_are_errors_that_name_them() {
        let unset = SecretRef::Env("INLET_TEST_SECRET_THAT_IS_NEVER_SET".into());
        let err = unset.read(Path::new(".")).unwrap_err();
        assert!(matches!(err, SecretError::Unset(_)));
        assert!(
            err.to_string()
                .contains("INLET_TEST_SECRET_THAT_IS_NEVER_SET")
        );
        // PATH is set and not blank on every machine that runs the tests.
        let set = SecretRef::Env("PATH".into()).read(Path::new(".")).unwrap();
        assert_eq!(format!("{set:?}"), "Secret(..)");
    }
}
