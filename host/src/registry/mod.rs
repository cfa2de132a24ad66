//! The loaded connectors. Each is an immutable [`Connector`] (code,
//! manifest, sandbox, push policy) swapped in atomically; per-source state
//! that outlives a version (counters, errors, pull status) sits beside it in
//! a [`SourceState`].

mod source;

pub use source::{Counters, PullStatus, SourceState};

use crate::config::{ConfigError, HostConfig, Manifest, valid_source_name};
use crate::push::PushPolicy;
use crate::runtime::{Code, Descriptor, Runtime, Sandbox};
use crate::store::now_ms;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One loaded version of a connector.
pub struct Connector {
    /// The source name: the file stem, used in URLs.
    pub name: String,
    pub descriptor: Descriptor,
    /// Hex SHA-256 of the `.wasm` file.
    pub hash: String,
    /// `name@version+sha256:<12 hex>`, written into every envelope.
    pub label: String,
    pub code: Code,
    pub manifest: Manifest,
    pub sandbox: Arc<Sandbox>,
    pub push: PushPolicy,
    pub loaded_at_ms: u64,
    pub wasm_path: PathBuf,
    pub manifest_path: Option<PathBuf>,
}

/// Why a connector file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    Component { path: PathBuf, message: String },
    #[error(transparent)]
    Manifest(#[from] ConfigError),
}

/// The set of loaded connectors.
pub struct Registry {
    runtime: Arc<Runtime>,
    config: Arc<HostConfig>,
    loaded: ArcSwap<HashMap<String, Arc<Connector>>>,
    sources: Mutex<HashMap<String, Arc<SourceState>>>,
    /// Serializes scans so two rescans never race on one name.
    scan_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>, config: Arc<HostConfig>) -> Self {
        Registry {
            runtime,
            config,
            loaded: ArcSwap::from_pointee(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            scan_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
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

    /// Names with state (loaded now or earlier), sorted.
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
    pub async fn scan(&self) -> Vec<String> {
        let _guard = self.scan_lock.lock().await;
        let dir = &self.config.plugins_dir;
        let mut found = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
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
                    if !valid_source_name(stem) {
                        tracing::warn!(file = %path.display(), "Ignoring a connector file whose name is not a valid source name (letters, digits, `-` and `_`, at most 64).");
                        continue;
                    }
                    found.push(stem.to_string());
                }
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "Cannot read the plugins directory.");
            }
        }
        found.sort();
        let mut changed = Vec::new();
        for name in &found {
            if self.load_if_changed(name).await {
                changed.push(name.clone());
            }
        }
        let removed: Vec<String> = self
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
            self.source(&name).set_error(None);
            tracing::info!(connector = %name, "Connector removed; its checkpoints and events are kept.");
            changed.push(name);
        }
        changed
    }

    /// Loads `name` if its files differ from the loaded version.
    async fn load_if_changed(&self, name: &str) -> bool {
        let wasm_path = self.config.plugins_dir.join(format!("{name}.wasm"));
        let manifest_path = self.config.plugins_dir.join(format!("{name}.toml"));
        let bytes = match std::fs::read(&wasm_path) {
            Ok(b) => b,
            Err(err) => {
                self.source(name)
                    .set_error(Some(format!("{}: cannot read: {err}", wasm_path.display())));
                return false;
            }
        };
        let manifest_text = std::fs::read_to_string(&manifest_path).ok();
        let hash = hex::encode(Sha256::digest(&bytes));
        if let Some(current) = self.get(name) {
            let same_manifest = match (&current.manifest_path, &manifest_text) {
                (None, None) => true,
                (Some(_), Some(text)) => *text == self.source(name).manifest_text(),
                _ => false,
            };
            if current.hash == hash && same_manifest {
                return false;
            }
        }
        let state = self.source(name);
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
                state.set_manifest_text(manifest_text.unwrap_or_default());
                state.set_error(None);
                state
                    .counters
                    .reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let connector = Arc::new(connector);
                self.loaded.rcu(|map| {
                    let mut map = HashMap::clone(map);
                    map.insert(name.to_string(), connector.clone());
                    map
                });
                true
            }
            Err(err) => {
                let serving = self.get(name).is_some();
                tracing::error!(connector = %name, error = %err, previous_version_serving = serving, "Connector failed to load.");
                state.set_error(Some(err.to_string()));
                false
            }
        }
    }

    async fn load(
        &self,
        name: &str,
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
        )?);
        let push = PushPolicy::build(&manifest, manifest_path)?;
        let component_err = |message: String| LoadError::Component {
            path: wasm_path.to_path_buf(),
            message,
        };
        let runtime = self.runtime.clone();
        let code = tokio::task::spawn_blocking(move || {
            let component = runtime.compile(&bytes)?;
            runtime.link(&component)
        })
        .await
        .map_err(|e| component_err(format!("compile task failed: {e}")))?
        .map_err(|e| component_err(format!("{e:#}")))?;
        let descriptor = self
            .runtime
            .describe(&code, &sandbox)
            .await
            .map_err(|e| component_err(format!("describe() failed: {e}")))?;
        if !descriptor.push && !descriptor.pull {
            return Err(component_err(
                "describe() lists neither push nor pull mode".to_string(),
            ));
        }
        let label = format!("{name}@{}+sha256:{}", descriptor.version, &hash[..12]);
        Ok(Connector {
            name: name.to_string(),
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
}
