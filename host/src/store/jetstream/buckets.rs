//! The KV buckets: checkpoints (compare-and-set on the revision a pull
//! read), consumer cursors, idempotency answers, and the helpers that open
//! and list buckets.

use super::*;

#[async_trait]
impl Checkpoints for JetStreamStore {
    async fn checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.inner.read_checkpoint(source, partition).await?.1)
    }

    async fn checkpoint_for_pull(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<CheckpointRead, StoreError> {
        let (revision, checkpoint) = self.inner.read_checkpoint(source, partition).await?;
        Ok(CheckpointRead {
            value: checkpoint.map(|c| c.value().to_string()),
            revision,
        })
    }

    async fn checkpoints(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, Checkpoint)>, StoreError> {
        self.inner.connected()?;
        let prefix = format!("{source}.");
        let keys = keys_with_prefix(&self.inner.checkpoints, &prefix, "checkpoint keys").await?;
        let mut out = Vec::new();
        for key in keys {
            let Some(partition) = parse_token(&key[prefix.len()..]) else {
                continue;
            };
            if let (_, Some(cp)) = self
                .inner
                .read_checkpoint(source, partition.as_deref())
                .await?
            {
                out.push((partition, cp));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn set_checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        self.inner.connected()?;
        let key = checkpoint_key(source, partition);
        let kv = &self.inner.checkpoints;
        match value {
            Some(v) => {
                let cp = Checkpoint::V1 {
                    value: v.clone(),
                    updated_ms: now_ms(),
                };
                kv.put(&key, Bytes::from(serde_json::to_vec(&cp).expect("json")))
                    .await
                    .map_err(|e| unavailable(&format!("checkpoint {key}"), e))?;
            }
            None => {
                kv.delete(&key)
                    .await
                    .map_err(|e| unavailable(&format!("checkpoint {key}"), e))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Cursors for JetStreamStore {
    async fn cursor(&self, source: &str, name: &str) -> Result<Option<u64>, StoreError> {
        self.inner.connected()?;
        let key = format!("{source}.{name}");
        let value = self
            .inner
            .cursors
            .get(key.clone())
            .await
            .map_err(|e| unavailable(&format!("cursor {key}"), e))?;
        value
            .map(|v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("cursor {key} is not a number")))
            })
            .transpose()
    }

    async fn cursors(&self, source: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.connected()?;
        let prefix = format!("{source}.");
        let keys = keys_with_prefix(&self.inner.cursors, &prefix, "cursor keys").await?;
        let mut out = Vec::new();
        for key in keys {
            let name = key[prefix.len()..].to_string();
            if let Some(offset) = self.cursor(source, &name).await? {
                out.push((name, offset));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn set_cursor(&self, source: &str, name: &str, offset: u64) -> Result<(), StoreError> {
        self.inner.connected()?;
        let key = format!("{source}.{name}");
        self.inner
            .cursors
            .put(&key, Bytes::from(offset.to_string()))
            .await
            .map_err(|e| unavailable(&format!("cursor {key}"), e))?;
        Ok(())
    }
}

impl Inner {
    /// A checkpoint and its KV revision (0: never written; a deleted one
    /// has the revision of its delete marker).
    pub(super) async fn read_checkpoint(
        &self,
        source: &str,
        partition: Option<&str>,
    ) -> Result<(u64, Option<Checkpoint>), StoreError> {
        self.connected()?;
        let key = checkpoint_key(source, partition);
        let entry = self
            .checkpoints
            .entry(key.clone())
            .await
            .map_err(|e| unavailable(&format!("checkpoint {key}"), e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let cp: Checkpoint = serde_json::from_slice(&e.value).map_err(|err| {
                    StoreError::Corrupt(format!("checkpoint {key} is not a checkpoint: {err}"))
                })?;
                (e.revision, Some(cp))
            }
            Some(e) => (e.revision, None),
            None => (0, None),
        })
    }
}

/// A KV key token for a partition or other free text: as is when it is
/// letters, digits, `-` and `_`, else hex (KV keys allow few characters).
pub(super) fn key_token(p: Option<&str>) -> String {
    match p {
        None => "default".into(),
        Some(p)
            if !p.is_empty()
                && p.len() <= 128
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            format!("n-{p}")
        }
        Some(p) => format!("x-{}", hex::encode(p)),
    }
}

pub(super) fn parse_token(t: &str) -> Option<Option<String>> {
    match t {
        "default" => Some(None),
        _ => {
            if let Some(n) = t.strip_prefix("n-") {
                Some(Some(n.to_string()))
            } else {
                let raw = hex::decode(t.strip_prefix("x-")?).ok()?;
                Some(Some(String::from_utf8(raw).ok()?))
            }
        }
    }
}

pub(super) fn checkpoint_key(source: &str, partition: Option<&str>) -> String {
    format!("{source}.{}", key_token(partition))
}

/// Opens the KV bucket `name`, creating its stream (`KV_{name}`) when
/// missing and updating its history, max age and replicas when they
/// differ. Done by hand: the client's KV constructors query account fields
/// that nats-server 2.9 does not send.
pub(super) async fn kv_bucket(
    js: &jetstream::Context,
    name: &str,
    history: i64,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, StoreError> {
    // Checkpoints and leases are read from the stream leader: a direct get
    // may be answered by a replica that lags (harmless for idempotency
    // answers, which a create settles anyway).
    let allow_direct = name.contains("idem_");
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: history,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let what = || format!("cannot open KV bucket {name}");
    let mut stream = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| unavailable(&what(), e))?;
    let current = &stream.cached_info().config;
    if current.max_messages_per_subject != history
        || current.max_age != max_age
        || current.num_replicas != replicas
        || current.allow_direct != allow_direct
    {
        js.update_stream(config)
            .await
            .map_err(|e| unavailable(&what(), e))?;
        stream = js
            .get_stream(format!("KV_{name}"))
            .await
            .map_err(|e| unavailable(&what(), e))?;
    }
    drop(stream);
    js.get_key_value(name)
        .await
        .map_err(|e| unavailable(&what(), e))
}

/// Writes `key` only if it has no value (absent, expired or deleted):
/// `Some(revision)`, or `None` when it has one. Unlike the client's
/// `create`, a write whose ack was lost is an error, never "exists" (which
/// would make this host's own write look like another's).
pub(super) async fn claim(
    kv: &kv::Store,
    key: &str,
    value: Bytes,
) -> Result<Option<u64>, kv::UpdateError> {
    match kv.update(key, value.clone(), 0).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            let entry = kv
                .entry(key)
                .await
                .map_err(|e| kv::UpdateError::with_source(kv::UpdateErrorKind::Other, e))?;
            match entry {
                Some(e) if e.operation != kv::Operation::Put => {
                    match kv.update(key, value, e.revision).await {
                        Ok(revision) => Ok(Some(revision)),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(None),
            }
        }
        Err(e) => Err(e),
    }
}

/// The keys of a KV bucket that start with `prefix` (a listing of the
/// bucket: for status, memberships and retention, never a hot path).
pub(super) async fn keys_with_prefix(
    kv: &kv::Store,
    prefix: &str,
    what: &str,
) -> Result<Vec<String>, StoreError> {
    kv.keys()
        .await
        .map_err(|e| unavailable(what, e))?
        .try_filter(|k| futures::future::ready(k.starts_with(prefix)))
        .try_collect()
        .await
        .map_err(|e| unavailable(what, e))
}

pub(super) async fn read_record(
    kv: &kv::Store,
    key: &str,
) -> Result<Option<PushRecord>, StoreError> {
    let value = kv
        .get(key)
        .await
        .map_err(|e| unavailable("idempotency record", e))?;
    value
        .map(|v| {
            serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!("idempotency record {key} is unreadable: {e}"))
            })
        })
        .transpose()
}

/// Moves a checkpoint from `expected`, the revision the pull read; fails
/// if anyone wrote it since.
pub(super) async fn set_checkpoint_cas(
    inner: &Inner,
    source: &str,
    partition: Option<&str>,
    value: &str,
    expected: u64,
) -> Result<(), StoreError> {
    let key = checkpoint_key(source, partition);
    let cp = Checkpoint::V1 {
        value: value.to_string(),
        updated_ms: now_ms(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&cp).expect("json"));
    match inner.checkpoints.update(&key, bytes, expected).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            Err(StoreError::Conflict(format!(
                "the checkpoint {key} moved since this pull read it (another host or the admin API wrote it); the batch's events are kept, their msg-ids make the re-pull harmless"
            )))
        }
        Err(e) => Err(unavailable(&format!("checkpoint {key}"), e)),
    }
}
