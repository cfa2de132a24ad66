//! The compiled-component cache in `data_dir/cache`.
//!
//! Compiling a connector with Cranelift takes from tens of milliseconds to
//! seconds; loading the machine code it produced takes a few. Every
//! component the host compiles is serialized to one file named by the
//! SHA-256 of the component and the engine's compatibility hash
//! ([`Engine::precompile_compatibility_hash`]), so a restart, or a swap
//! back to a version seen before, skips the compiler.
//!
//! An entry is `INLETCW1`, the payload length (u64, little endian), the
//! SHA-256 of the payload, then the payload (what [`Component::serialize`]
//! wrote). It is written to a temporary name and renamed into place, and
//! checked (length and hash) before it is deserialized, so a torn write, a
//! truncated file or flipped bits make a cache miss and a recompile, never
//! a load of unchecked machine code. Entries of another engine build, stray
//! temporary files and entries nobody used for [`UNUSED_ENTRY_TTL`] are
//! removed by [`ComponentCache::clean`].

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every cache entry (format version 1).
const MAGIC: &[u8; 8] = b"INLETCW1";
/// Magic, payload length and payload SHA-256.
const HEADER_LEN: usize = 8 + 8 + 32;
/// The file name suffix of an entry.
const SUFFIX: &str = ".cwasm";
/// Entries of components not loaded now are kept this long after their
/// last use, so swapping back to a recent version stays fast.
pub const UNUSED_ENTRY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Deserialized from a verified cache entry.
    Cache,
    /// Compiled now (and written to the cache).
    Compiled,
}

/// Compiled components on disk, keyed by content and engine.
#[derive(Debug)]
pub struct ComponentCache {
    dir: PathBuf,
    /// Hex prefix of the SHA-256 of the engine's compatibility hash.
    engine_key: String,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ComponentCache {
    /// A cache in `dir` (created when the first entry is written) for
    /// components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        ComponentCache {
            dir,
            engine_key,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Components loaded from the cache since start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Components that had to be compiled since start.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The entry file for a component whose SHA-256 is `hash` (hex).
    pub fn entry_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}{SUFFIX}", self.engine_key))
    }

    /// Loads the component whose bytes hash to `hash` from the cache, or
    /// calls `compile` and stores its result. CPU- and disk-heavy: call
    /// from a blocking thread. A cache that cannot be read or written only
    /// costs time; the error is logged, never returned.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        compile: impl FnOnce() -> anyhow::Result<Component>,
    ) -> anyhow::Result<(Component, Origin)> {
        let path = self.entry_path(hash);
        match read_entry(&path) {
            Ok(Some(payload)) => match deserialize_verified(engine, &payload) {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    touch(&path);
                    return Ok((component, Origin::Cache));
                }
                Err(err) => {
                    tracing::warn!(file = %path.display(), error = %err, "Cached component does not load; removing it and compiling again.");
                    let _ = std::fs::remove_file(&path);
                }
            },
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "Cached component is corrupt; removing it and compiling again.");
                let _ = std::fs::remove_file(&path);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let component = compile()?;
        match component.serialize() {
            Ok(payload) => {
                if let Err(err) = self.write_entry(&path, &payload) {
                    tracing::warn!(file = %path.display(), error = %err, "Cannot write the compiled component to the cache; the next load compiles again.");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "Cannot serialize the compiled component for the cache.")
            }
        }
        Ok((component, Origin::Compiled))
    }

    fn write_entry(&self, path: &Path, payload: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(payload);
        // No fsync: a torn entry after a crash fails its hash check and is
        // compiled again.
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Removes stale entries: those of another engine build, leftover
    /// temporary files, unreadable names, and entries not in `in_use`
    /// (component hashes) that nobody used for [`UNUSED_ENTRY_TTL`].
    /// Returns how many files were removed. Must not run while this cache
    /// writes an entry (the registry calls it under its scan lock).
    pub fn clean(&self, in_use: &HashSet<String>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = match parse_entry_name(&name) {
                Some((hash, engine)) if engine == self.engine_key => {
                    !in_use.contains(hash)
                        && entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|m| now.duration_since(m).ok())
                            .is_some_and(|age| age > UNUSED_ENTRY_TTL)
                }
                _ => true,
            };
            if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(err) => {
                        tracing::warn!(file = %path.display(), error = %err, "Cannot remove a stale cache entry.")
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(dir = %self.dir.display(), removed, "Stale compiled components removed from the cache.");
        }
        removed
    }
}

/// `<64 hex>-<16 hex>.cwasm` → (component hash, engine key).
fn parse_entry_name(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (hash, engine) = stem.split_once('-')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(hash, 64) && hex(engine, 16)).then_some((hash, engine))
}

/// Reads and verifies an entry: `Ok(None)` when there is none, `Err` when
/// it is there but damaged; `Ok(Some(payload))` only when its length and
/// SHA-256 match the header.
fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read: {err}")),
    };
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("the header is missing or not an Inlet cache header".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if len != (bytes.len() - HEADER_LEN) as u64 {
        return Err(format!(
            "the header says {len} bytes but {} follow it",
            bytes.len() - HEADER_LEN
        ));
    }
    if Sha256::digest(&bytes[HEADER_LEN..]).as_slice() != &bytes[16..HEADER_LEN] {
        return Err("the SHA-256 of the contents does not match the header".into());
    }
    bytes.drain(..HEADER_LEN);
    Ok(Some(bytes))
}

/// Turns verified cache bytes back into a component.
#[expect(
    unsafe_code,
    reason = "deserializing precompiled machine code is unsafe in wasmtime"
)]
fn deserialize_verified(engine: &Engine, payload: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be the output of
    // `Component::serialize`. These bytes are: only this module writes into
    // the cache directory (inside the host's own data_dir), the entry is
    // named by the component's SHA-256 and this engine's compatibility
    // hash, and `read_entry` checked the payload's length and SHA-256
    // against the header written with it, so a torn, truncated or damaged
    // file never gets here. wasmtime itself also checks the engine
    // settings and version recorded in the payload.
    let component = unsafe { Component::deserialize(engine, payload) }?;
    Ok(component)
}

/// Marks an entry as used now, so `clean` keeps it.
fn touch(path: &Path) {
    let _ = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// A `Hasher` over SHA-256, stable across Rust releases (unlike
/// `DefaultHasher`), for the engine's compatibility hash.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(component (core module (func (export "f"))))"#;

    fn setup() -> (tempfile::TempDir, Engine, ComponentCache, String) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = ComponentCache::new(dir.path().join("cache"), &engine);
        let hash = hex::encode(Sha256::digest(WAT.as_bytes()));
        (dir, engine, cache, hash)
    }

    fn load(cache: &ComponentCache, engine: &Engine, hash: &str) -> Origin {
        cache
            .load_or_compile(engine, hash, || Ok(Component::new(engine, WAT)?))
            .unwrap()
            .1
    }

    #[test]
    fn second_load_is_a_hit() {
        let (_dir, engine, cache, hash) = setup();
        assert_eq!(load(&cache, &engine, &hash), Origin::Compiled);
        assert_eq!(load(&cache, &engine, &hash), Origin::Cache);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[test]
    fn a_damaged_entry_is_recompiled_and_replaced() {
        let (_dir, engine, cache, hash) = setup();
        load(&cache, &engine, &hash);
        let path = cache.entry_path(&hash);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_entry(&path).unwrap_err().contains("SHA-256"));
        assert_eq!(load(&cache, &engine, &hash), Origin::Compiled);
        assert_eq!(load(&cache, &engine, &hash), Origin::Cache);

        std::fs::write(&path, &bytes[..100]).unwrap();
        assert!(read_entry(&path).unwrap_err().contains("header says"));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(read_entry(&path).unwrap_err().contains("header"));
        assert_eq!(load(&cache, &engine, &hash), Origin::Compiled);
    }

    #[test]
    fn clean_removes_other_engines_and_strays_and_keeps_ours() {
        let (_dir, engine, cache, hash) = setup();
        load(&cache, &engine, &hash);
        let other = cache.dir().join(format!("{hash}-0123456789abcdef{SUFFIX}"));
        let stray = cache.dir().join(".x.cwasm.42.tmp");
        std::fs::write(&other, b"old").unwrap();
        std::fs::write(&stray, b"half").unwrap();
        assert_eq!(cache.clean(&HashSet::new()), 2);
        assert!(cache.entry_path(&hash).is_file(), "a fresh entry stays");
        assert!(!other.exists() && !stray.exists());
    }

    #[test]
    fn entry_names_parse() {
        let h = "a".repeat(64);
        assert_eq!(
            parse_entry_name(&format!("{h}-0123456789abcdef.cwasm")),
            Some((h.as_str(), "0123456789abcdef"))
        );
        assert_eq!(parse_entry_name("x-0123456789abcdef.cwasm"), None);
        assert_eq!(parse_entry_name(&format!("{h}-01.cwasm")), None);
    }
}
