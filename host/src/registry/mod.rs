//! The loaded connectors. Each is an immutable [`Connector`] (code,
//! manifest, sandbox, push policy) swapped in atomically; per-source state
//! that outlives a version (counters, errors, pull status) sits beside it in
//! a [`SourceState`].
//!
//! Loading at startup and hot reload are one code path, [`Registry::scan`]:
//! it compares every `NAME.wasm` (and `NAME.toml`) with the loaded version,
//! compiles what changed on a blocking thread (through the
//! [`ComponentCache`] in `data_dir/cache`), checks the result by
//! instantiating it and calling `describe`, and only then swaps it in.
//! Calls in flight keep their `Arc<Connector>` and finish on the old
//! version. [`watch`] runs `scan` when the plugins directory changes;
//! `POST /v1/reload` and SIGHUP call it directly. Every scan that changed
//! something is published on [`Registry::reloads`], which the pull
//! scheduler follows.

mod asymmetric;
mod auth;
mod files;
pub mod history;
mod policy;
mod presets;
mod source;
mod template;
mod watch;

pub use auth::{Signed, Verifier, bearer_token};
pub use policy::PushPolicy;
pub use source::{Counters, PullState, PullStatus, SourceState};
pub use watch::watch;

use crate::config::{ConfigError, HostConfig, Manifest, SourceName};

use crate::runtime::{CallError, Code, ComponentCache, Descriptor, Origin, Runtime, Sandbox};
use crate::store::now_ms;
use arc_swap::ArcSwap;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One loaded version of a connector.
pub struct Connector {
    /// The source name: the file stem, used in URLs and as the storage key.
    pub name: SourceName,
    /// What the component's `describe()` returned when it was loaded.
    pub descriptor: Descriptor,
    /// Hex SHA-256 of the `.wasm` file.
    pub hash: String,
    /// `name@version+sha256:<12 hex>`, written into every envelope.
    pub label: String,
    /// The compiled, linked component.
    pub code: Arc<Code>,
    /// The parsed `NAME.toml` (defaults without one).
    pub manifest: Manifest,
    /// Limits and capabilities of every call.
    pub sandbox: Arc<Sandbox>,
    /// Authentication, rate limits and dedup settings of the push path.
    pub push: PushPolicy,
    /// When this version was swapped in (ms since the Unix epoch).
    pub loaded_at_ms: u64,
    /// The `.wasm` file it was loaded from.
    pub wasm_path: PathBuf,
    /// The manifest file, when there is one.
    pub manifest_path: Option<PathBuf>,
}

/// Why a connector file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `.wasm` file does not compile, link, instantiate or describe
    /// itself.
    #[error("{path}: {message}")]
    Component {
        /// The `.wasm` file.
        path: PathBuf,
        /// Why it cannot be loaded.
        message: String,
    },
    /// The manifest does not parse or names a missing secret.
    #[error(transparent)]
    Manifest(#[from] ConfigError),
    /// `describe()` could not run now (no instance slot, the source's
    /// memory budget in use): tried again at the next scan.
    #[error("{path}: {message}")]
    Busy {
        /// The `.wasm` file.
        path: PathBuf,
        /// Why it was not loaded now.
        message: String,
    },
}

/// Connectors loaded at once by a scan.
const PARALLEL_LOADS: usize = 4;

/// The set of loaded connectors.
pub struct Registry {
    runtime: Arc<Runtime>,
    config: Arc<HostConfig>,
    cache: Arc<ComponentCache>,
    loaded: ArcSwap<HashMap<SourceName, Arc<Connector>>>,
    /// The sources whose `.wasm` file the last scan found (loaded or
    /// not): what `GET /v1/connectors` lists beside the loaded ones.
    present: Mutex<HashSet<String>>,
    sources: Mutex<HashMap<String, Arc<SourceState>>>,
    /// Serializes scans so two rescans never race on one name.
    scan_lock: tokio::sync::Mutex<()>,
    /// A lock per component hash being compiled.
    compiling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The linked code of every component hash some connector holds: N
    /// connectors with the same `.wasm` share one copy of its machine code
    /// (resident memory) and its instance-pool affinity (a slot last used
    /// by the same code is reused without remapping its memory image).
    shared_code: Mutex<HashMap<String, std::sync::Weak<Code>>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Counts scans that changed what is loaded: followers (the pull
    /// scheduler) watch it instead of the registry calling into them.
    reloads: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    /// An empty registry; [`Registry::scan`] loads the plugins directory.
    /// Compiled components are cached in `data_dir/cache`.
    pub fn new(
        runtime: Arc<Runtime>,
        config: Arc<HostConfig>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let cache = Arc::new(ComponentCache::new(
            config.data_dir.join("cache"),
            runtime.engine(),
        ));
        Registry {
            cache,
            runtime,
            config,
            loaded: ArcSwap::from_pointee(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            present: Mutex::default(),
            scan_lock: tokio::sync::Mutex::new(()),
            compiling: Mutex::default(),
            shared_code: Mutex::default(),
            metrics,
            reloads: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A receiver that changes after every scan that loaded, replaced or
    /// unloaded a connector.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// The wasmtime runtime that runs every connector.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The compiled-component cache (hit and miss counters for metrics).
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// The current version of `name`, if loaded.
    pub fn get(&self, name: &str) -> Option<Arc<Connector>> {
        self.loaded.load().get(name).cloned()
    }

    /// Every loaded connector, sorted by name.
    pub fn all(&self) -> Vec<Arc<Connector>> {
        let mut v: Vec<_> = self.loaded.load().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The state of `name`, created on first use; it survives reloads and
    /// removal.
    pub fn source(&self, name: &str) -> Arc<SourceState> {
        self.sources
            .lock()
            .expect("sources lock")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The sources to list: loaded, or with a file in the plugins
    /// directory (failed to load). A source whose file is gone is not
    /// listed; its status, events and checkpoints stay reachable by name.
    pub fn listed_sources(&self) -> Vec<String> {
        let present = self.present.lock().expect("present lock").clone();
        let mut v: Vec<String> = self
            .loaded
            .load()
            .keys()
            .map(|n| n.to_string())
            .chain(present)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Names with state (loaded now or earlier, or tried), sorted.
    pub fn known_sources(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .sources
            .lock()
            .expect("sources lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Scans the plugins directory: loads new and changed connectors,
    /// unloads removed ones. A file that fails to load leaves the previous
    /// version serving and records the error in its status. Returns the
    /// names whose loaded version changed.
    pub async fn scan(&self) -> Vec<SourceName> {
        let _guard = self.scan_lock.lock().await;
        // Listed on the blocking pool, like every file read of the scan.
        let dir = self.config.plugins_dir.clone();
        let listed = tokio::task::spawn_blocking(move || list_components(&dir))
            .await
            .unwrap_or_else(|e| Err(format!("listing task failed: {e}")));
        // A directory that cannot be listed is not an empty one: unloading
        // every connector on a transient error would be an outage.
        let mut found = match listed {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(dir = %self.config.plugins_dir.display(), error = %err, "Cannot list the plugins directory; nothing is loaded or unloaded until it can be.");
                return Vec::new();
            }
        };
        found.sort();
        *self.present.lock().expect("present lock") = found.iter().map(|n| n.to_string()).collect();
        // Several at once, so one slow or spinning component does not hold
        // up the others (each load is bounded by its describe deadline).
        let loads = found.iter().cloned().map(|name| async move {
            let changed = self.load_if_changed(&name).await;
            changed.then_some(name)
        });
        let mut loads = futures::stream::iter(loads).buffer_unordered(PARALLEL_LOADS);
        let mut changed = Vec::new();
        while let Some(loaded) = loads.next().await {
            changed.extend(loaded);
        }
        drop(loads);
        changed.sort();
        let removed: Vec<SourceName> = self
            .loaded
            .load()
            .keys()
            .filter(|n| !found.contains(n))
            .cloned()
            .collect();
        for name in removed {
            self.loaded.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.remove(&name);
                map
            });
            let state = self.source(&name);
            state.set_error(None);
            state.set_reload_error(None);
            state.notify_version_changed();
            tracing::info!(connector = %name, "Connector removed; its checkpoints and events are kept.");
            changed.push(name);
        }
        let in_use: HashSet<String> = self
            .loaded
            .load()
            .values()
            .map(|c| c.hash.clone())
            .collect();
        self.cache.clean(&in_use);
        if !changed.is_empty() {
            self.reloads.send_modify(|n| *n += 1);
        }
        changed
    }

    /// Records why `name`'s files could not be loaded: its last error, and
    /// while a previous version serves, why that version is stale.
    fn load_failed(&self, name: &SourceName, state: &SourceState, err: String) {
        if self.get(name).is_some() {
            state.set_reload_error(Some(err.clone()));
        }
        state.set_error(Some(err));
    }

    /// Loads `name` if its files differ from the loaded version.
    async fn load_if_changed(&self, name: &SourceName) -> bool {
        let wasm_path = self.config.plugins_dir.join(format!("{name}.wasm"));
        let manifest_path = self.config.plugins_dir.join(format!("{name}.toml"));
        // Known from now on: status shows it while it loads (or why not).
        let state = self.source(name);
        // Off the async workers: the files are whatever was dropped there.
        let (wasm, manifest) = {
            let (wasm_path, manifest_path) = (wasm_path.clone(), manifest_path.clone());
            match tokio::task::spawn_blocking(move || {
                (
                    files::read_regular(&wasm_path, files::MAX_COMPONENT_BYTES),
                    files::read_manifest(&manifest_path),
                )
            })
            .await
            {
                Ok(read) => read,
                Err(e) => (Err(format!("reading the files failed: {e}")), Ok(None)),
            }
        };
        let bytes = match wasm {
            Ok(Some(b)) => b,
            Ok(None) => {
                // Removed since the directory was listed: the next scan
                // unloads it.
                return false;
            }
            Err(err) => {
                tracing::error!(connector = %name, error = %err, "Connector file cannot be read.");
                self.load_failed(name, &state, err);
                return false;
            }
        };
        // A manifest that exists but cannot be used refuses the load (or
        // keeps the version serving): it never means the defaults, which
        // include `auth = none`.
        let manifest_text = match manifest {
            Ok(text) => text,
            Err(err) => {
                let serving = self.get(name).is_some();
                let err = if serving {
                    format!("{err}; the previous version stays in force")
                } else {
                    format!("{err}; {name} is not loaded until its manifest can be read")
                };
                tracing::error!(connector = %name, error = %err, "Connector manifest cannot be used.");
                self.load_failed(name, &state, err);
                return false;
            }
        };
        if manifest_text.is_none() && self.config.require_manifest {
            let err = format!(
                "{}: missing, and inlet.toml sets `require_manifest = true`; {name}.wasm is not loaded without it",
                manifest_path.display()
            );
            tracing::error!(connector = %name, "{err}");
            self.load_failed(name, &state, err);
            return false;
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        // A component that failed to compile, link or describe itself with
        // these very files fails the same way again (a spinning describe
        // costs its whole deadline): it is tried again once either changes.
        let attempt = (hash.clone(), manifest_text.clone());
        if state.failed_component.lock().expect("lock").as_ref() == Some(&attempt) {
            return false;
        }
        if let Some(current) = self.get(name) {
            let same_manifest = match (&current.manifest_path, &manifest_text) {
                (None, None) => true,
                (Some(_), Some(text)) => *text == state.manifest_text(),
                _ => false,
            };
            if current.hash == hash && same_manifest {
                // The files are the serving version again (a bad manifest
                // was taken back): nothing is stale.
                if let Some(err) = state.reload_error() {
                    state.set_reload_error(None);
                    if state.last_error().as_deref() == Some(err.as_str()) {
                        state.set_error(None);
                    }
                }
                return false;
            }
            // A manifest that vanished is far more often a file caught
            // mid-write than a wish for the defaults, and the defaults
            // include `auth = none`: keep the version serving.
            if current.manifest_path.is_some() && manifest_text.is_none() {
                let err = format!(
                    "{}: missing or empty while {name}.wasm is loaded with a manifest; the previous manifest stays in force (write the settings you want, or remove {name}.wasm too)",
                    manifest_path.display()
                );
                tracing::warn!(connector = %name, "{err}");
                self.load_failed(name, &state, err);
                return false;
            }
        }
        match self
            .load(
                name,
                &wasm_path,
                bytes,
                hash,
                manifest_text.as_deref(),
                &manifest_path,
            )
            .await
        {
            Ok(connector) => {
                tracing::info!(
                    connector = %name,
                    version = %connector.descriptor.version,
                    hash = %&connector.hash[..12],
                    push = connector.descriptor.push,
                    pull = connector.descriptor.pull,
                    "Connector loaded."
                );
                *state.failed_component.lock().expect("lock") = None;
                self.metrics.load(name, true);
                state.set_manifest_text(manifest_text.unwrap_or_default());
                state.set_error(None);
                state.set_reload_error(None);
                state
                    .counters
                    .reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let connector = Arc::new(connector);
                self.loaded.rcu(|map| {
                    let mut map = HashMap::clone(map);
                    map.insert(name.clone(), connector.clone());
                    map
                });
                state.notify_version_changed();
                true
            }
            Err(err) => {
                if matches!(err, LoadError::Component { .. }) {
                    *state.failed_component.lock().expect("lock") = Some(attempt);
                }
                self.metrics.load(name, false);
                let serving = self.get(name).is_some();
                tracing::error!(connector = %name, error = %err, previous_version_serving = serving, "Connector failed to load.");
                self.load_failed(name, &state, err.to_string());
                false
            }
        }
    }

    async fn load(
        &self,
        name: &SourceName,
        wasm_path: &Path,
        bytes: Vec<u8>,
        hash: String,
        manifest_text: Option<&str>,
        manifest_path: &Path,
    ) -> Result<Connector, LoadError> {
        let manifest = match manifest_text {
            Some(text) => Manifest::parse(manifest_path, text)?,
            None => Manifest::default(),
        };
        let sandbox = Arc::new(Sandbox::resolve(
            name,
            &manifest,
            &self.config.sandbox,
            manifest_path,
            self.source(name).usage.clone(),
        )?);
        let push = PushPolicy::build(
            &manifest,
            manifest_path,
            self.config.public_url.as_deref(),
            name,
        )?;
        let component_err = |message: String| LoadError::Component {
            path: wasm_path.to_path_buf(),
            message,
        };
        let code = self
            .compile(name, bytes, &hash)
            .await
            .map_err(component_err)?;
        let descriptor = self
            .runtime
            .describe(&code, &sandbox)
            .await
            .map_err(|e| match e {
                CallError::Overloaded | CallError::SourceTimeout { .. } => LoadError::Busy {
                    path: wasm_path.to_path_buf(),
                    message: format!("describe() could not run now: {e}"),
                },
                e => component_err(format!("describe() failed: {e}")),
            })?;
        if !descriptor.push && !descriptor.pull {
            return Err(component_err(
                "describe() lists neither push nor pull mode".to_string(),
            ));
        }
        let label = format!("{name}@{}+sha256:{}", descriptor.version, &hash[..12]);
        Ok(Connector {
            name: name.clone(),
            descriptor,
            hash,
            label,
            code,
            manifest,
            sandbox,
            push,
            loaded_at_ms: now_ms(),
            wasm_path: wasm_path.to_path_buf(),
            manifest_path: manifest_text.map(|_| manifest_path.to_path_buf()),
        })
    }

    /// Compiles (or loads from the cache) and links a component on a
    /// blocking thread, off the request path.
    async fn compile(&self, name: &str, bytes: Vec<u8>, hash: &str) -> Result<Arc<Code>, String> {
        // One compile per component at a time: a second connector with the
        // same component (loaded beside it) waits and takes it from the
        // cache.
        let lock = self
            .compiling
            .lock()
            .expect("lock")
            .entry(hash.to_string())
            .or_default()
            .clone();
        let result = {
            let _compiling = lock.lock().await;
            let shared = self
                .shared_code
                .lock()
                .expect("lock")
                .get(hash)
                .and_then(std::sync::Weak::upgrade);
            match shared {
                Some(code) => {
                    tracing::info!(connector = %name, "Component shared with a loaded connector of the same hash.");
                    Ok(code)
                }
                None => self.compile_now(name, bytes, hash).await.map(|code| {
                    let code = Arc::new(code);
                    let mut shared = self.shared_code.lock().expect("lock");
                    shared.retain(|_, c| c.strong_count() > 0);
                    shared.insert(hash.to_string(), Arc::downgrade(&code));
                    code
                }),
            }
        };
        drop(lock);
        self.compiling
            .lock()
            .expect("lock")
            .retain(|_, l| Arc::strong_count(l) > 1);
        result
    }

    async fn compile_now(&self, name: &str, bytes: Vec<u8>, hash: &str) -> Result<Code, String> {
        let runtime = self.runtime.clone();
        let hash = hash.to_string();
        let started = Instant::now();
        let cache = self.cache.clone();
        let (code, origin) = tokio::task::spawn_blocking(move || {
            let (component, origin) =
                cache.load_or_compile(runtime.engine(), &hash, || runtime.compile(&bytes))?;
            anyhow::Ok((runtime.link(&component)?, origin))
        })
        .await
        .map_err(|e| format!("compile task failed: {e}"))?
        .map_err(|e| format!("{e:#}"))?;
        let ms = started.elapsed().as_millis() as u64;
        match origin {
            Origin::Cache => tracing::info!(connector = %name, ms, "Component loaded from cache."),
            Origin::Compiled => tracing::info!(connector = %name, ms, "Component compiled."),
        }
        Ok(code)
    }
}

/// The source names of the `NAME.wasm` files in `dir` (dotfiles and names
/// that are not valid source names skipped, the latter with a warning).
fn list_components(dir: &Path) -> Result<Vec<SourceName>, String> {
    let mut found = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| e.to_string())?;
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                    continue;
                }
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if stem.starts_with('.') {
                    continue;
                }
                let Some(name) = SourceName::parse(stem) else {
                    tracing::warn!(file = %path.display(), "Ignoring a connector file whose name is not a valid source name (letters, digits, `-` and `_`, at most 64).");
                    continue;
                };
                found.push(name);
            }
        }
        // A directory that does not exist (yet) holds no connectors.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.to_string()),
    }
    Ok(found)
}
