//! Pull leases and host membership: which host pulls which partition of
//! a source, renewed every third of `lease_ttl`.

use super::buckets::{claim, key_token, keys_with_prefix};
use super::*;

#[async_trait]
impl PullLeases for JetStreamStore {
    async fn lease(
        &self,
        source: &str,
        partition: Option<&str>,
        of: usize,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        inner.connected()?;
        let _ops = inner.lease_ops.lock().await;
        if inner.closing.load(Ordering::Acquire) {
            return Ok(false);
        }
        if !inner.joined.lock().expect("lock").contains(source) {
            // A manual pull on a host whose schedule has not joined yet.
            drop(_ops);
            self.join(source).await;
            return Box::pin(self.lease(source, partition, of)).await;
        }
        let hosts = inner
            .members
            .lock()
            .expect("lock")
            .get(source)
            .copied()
            .unwrap_or(1)
            .max(1);
        let share = of.div_ceil(hosts).max(1);
        let key = lease_key(source, partition);
        let (held_here, held_for_source) = {
            let mut held = inner.held.lock().expect("lock");
            let mine = held.get_mut(&key).map(|h| {
                h.last_used = Instant::now();
                h.revision
            });
            let count = held.values().filter(|h| h.source == source).count();
            (mine, count)
        };
        if let Some(revision) = held_here {
            if held_for_source > share {
                // More than a fair share since other hosts joined: hand this
                // one over (the run has not started on it).
                inner.held.lock().expect("lock").remove(&key);
                let _ = inner
                    .bounded(inner.leases.delete_expect_revision(&key, Some(revision)))
                    .await;
                tracing::info!(lease = %key, share, hosts, "Pull lease handed over to balance the hosts.");
                return Ok(false);
            }
            if inner.renew(&key, revision).await? {
                return Ok(true);
            }
            // Expired (and perhaps taken): claim it afresh below.
        } else if held_for_source >= share {
            return Ok(false);
        }
        match inner
            .bounded(claim(
                &inner.leases,
                &key,
                Bytes::from(inner.host_id.clone()),
            ))
            .await?
        {
            Ok(Some(revision)) => {
                inner.held.lock().expect("lock").insert(
                    key.clone(),
                    Held {
                        source: source.to_string(),
                        revision,
                        last_used: Instant::now(),
                    },
                );
                tracing::debug!(lease = %key, "Pull lease taken.");
                Ok(true)
            }
            // Another host's (a lease is never adopted: two processes with
            // one host id must not both hold it).
            Ok(None) => Ok(false),
            Err(e) => Err(unavailable(&format!("lease {key}"), e)),
        }
    }

    async fn keep_lease(&self, source: &str, partition: Option<&str>) -> Result<bool, StoreError> {
        let inner = &self.inner;
        inner.connected()?;
        let _ops = inner.lease_ops.lock().await;
        if inner.closing.load(Ordering::Acquire) {
            return Ok(false);
        }
        let key = lease_key(source, partition);
        let revision = {
            let mut held = inner.held.lock().expect("lock");
            match held.get_mut(&key) {
                Some(h) => {
                    h.last_used = Instant::now();
                    h.revision
                }
                None => return Ok(false),
            }
        };
        inner.renew(&key, revision).await
    }

    async fn drop_lease(&self, source: &str, partition: Option<&str>) {
        let inner = &self.inner;
        let _ops = inner.lease_ops.lock().await;
        let key = lease_key(source, partition);
        let held = inner.held.lock().expect("lock").remove(&key);
        if let Some(h) = held {
            let _ = inner
                .bounded(inner.leases.delete_expect_revision(&key, Some(h.revision)))
                .await;
        }
    }

    async fn join(&self, source: &str) {
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire)
            || !inner
                .joined
                .lock()
                .expect("lock")
                .insert(source.to_string())
        {
            return;
        }
        let key = format!("member.{source}.{}", inner.host_id);
        let joined = inner
            .bounded(inner.leases.put(&key, Bytes::from(now_ms().to_string())))
            .await;
        if !matches!(joined, Ok(Ok(_))) {
            tracing::debug!(
                source,
                "Joining the pullers of a source failed; the next heartbeat retries."
            );
        }
        // Count this host at once; the next listing corrects the number.
        let mut members = inner.members.lock().expect("lock");
        let n = members.entry(source.to_string()).or_insert(0);
        *n += 1;
    }

    async fn leave(&self, source: &str) {
        let inner = &self.inner;
        let _ops = inner.lease_ops.lock().await;
        inner.joined.lock().expect("lock").remove(source);
        inner.release(Some(source)).await;
        let _ = inner
            .bounded(
                inner
                    .leases
                    .delete(format!("member.{source}.{}", inner.host_id)),
            )
            .await;
    }

    async fn release_leases(&self) {
        let inner = &self.inner;
        let _ops = inner.lease_ops.lock().await;
        inner.closing.store(true, Ordering::Release);
        inner.release(None).await;
        let joined: Vec<String> = inner.joined.lock().expect("lock").drain().collect();
        for source in joined {
            let _ = inner
                .bounded(
                    inner
                        .leases
                        .delete(format!("member.{source}.{}", inner.host_id)),
                )
                .await;
        }
    }
}

impl Inner {
    /// Renews a held lease on its revision; `false` (and forgotten) when it
    /// expired or another host has it now. The caller holds `lease_ops`.
    pub(super) async fn renew(&self, key: &str, revision: u64) -> Result<bool, StoreError> {
        match self
            .bounded(
                self.leases
                    .update(key, Bytes::from(self.host_id.clone()), revision),
            )
            .await?
        {
            Ok(rev) => {
                if let Some(h) = self.held.lock().expect("lock").get_mut(key) {
                    h.revision = rev;
                }
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.held.lock().expect("lock").remove(key);
                Ok(false)
            }
            Err(e) => Err(unavailable(&format!("lease {key}"), e)),
        }
    }

    /// Gives up this host's leases of `source` (all sources: `None`).
    pub(super) async fn release(&self, source: Option<&str>) {
        let held: Vec<(String, u64)> = {
            let mut held = self.held.lock().expect("lock");
            let keys: Vec<String> = held
                .iter()
                .filter(|(_, h)| source.is_none_or(|s| h.source == s))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| held.remove(&k).map(|h| (k, h.revision)))
                .collect()
        };
        for (key, revision) in held {
            let _ = self
                .bounded(self.leases.delete_expect_revision(&key, Some(revision)))
                .await;
        }
    }

    /// Writes `member.{source}.{host}` for every source this host pulls
    /// (they expire with the lease TTL) and counts the hosts of each.
    pub(super) async fn refresh_members(&self) {
        let joined: Vec<String> = self.joined.lock().expect("lock").iter().cloned().collect();
        for source in joined {
            let key = format!("member.{source}.{}", self.host_id);
            if let Err(e) = self
                .leases
                .put(&key, Bytes::from(now_ms().to_string()))
                .await
            {
                tracing::debug!(error = %e, "Membership heartbeat failed.");
                return;
            }
        }
        // On an error, keep the counts of the last good listing.
        let Ok(keys) = keys_with_prefix(&self.leases, "member.", "member keys").await else {
            return;
        };
        let mut counts: HashMap<String, usize> = HashMap::new();
        for k in keys {
            if let Some((source, _host)) = k["member.".len()..].split_once('.') {
                *counts.entry(source.to_string()).or_default() += 1;
            }
        }
        *self.members.lock().expect("lock") = counts;
    }

    /// Renews every lease this host holds, all at once, each bounded by a
    /// third of the TTL; drops the ones lost or long unused.
    pub(super) async fn renew_leases(&self) {
        let _ops = self.lease_ops.lock().await;
        let idle_after = (self.config.lease_ttl * 10).max(Duration::from_secs(300));
        let bound = self.config.lease_ttl / 3;
        let held: Vec<(String, u64, bool)> = self
            .held
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, h)| (k.clone(), h.revision, h.last_used.elapsed() > idle_after))
            .collect();
        let renewals = held.into_iter().map(|(key, revision, idle)| async move {
            if idle {
                let _ = self
                    .leases
                    .delete_expect_revision(&key, Some(revision))
                    .await;
                return (key, None);
            }
            let renewed = tokio::time::timeout(
                bound,
                self.leases
                    .update(&key, Bytes::from(self.host_id.clone()), revision),
            )
            .await;
            match renewed {
                Ok(Ok(rev)) => (key, Some(rev)),
                Ok(Err(e)) => {
                    tracing::warn!(lease = %key, error = %e, "Pull lease lost; another host may take the partition over.");
                    (key, None)
                }
                Err(_) => {
                    tracing::warn!(lease = %key, "Pull lease renewal timed out; treating the lease as lost.");
                    (key, None)
                }
            }
        });
        let results = futures::future::join_all(renewals).await;
        let mut held = self.held.lock().expect("lock");
        for (key, revision) in results {
            match revision {
                Some(rev) => {
                    if let Some(h) = held.get_mut(&key) {
                        h.revision = rev;
                    }
                }
                None => {
                    held.remove(&key);
                }
            }
        }
    }
}

pub(super) fn lease_key(source: &str, partition: Option<&str>) -> String {
    format!("lease.{source}.{}", key_token(partition))
}

/// Renews the held leases every third of the lease TTL, on its own task so
/// nothing else it could wait on delays a renewal.
pub(super) async fn renewals(inner: Weak<Inner>) {
    let tick = match inner.upgrade() {
        Some(i) => i.config.lease_ttl / 3,
        None => return,
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        if inner.connected().is_ok() {
            inner.renew_leases().await;
        }
    }
}
