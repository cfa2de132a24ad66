//! Unit tests of the sled store: group commit, dedup, idempotency, retention.

use super::*;
use crate::event::Event;
use crate::store::Mode;
use std::time::Duration;

fn event(id: Option<&str>) -> crate::store::PreparedEvent {
    Event {
        id: id.map(str::to_string),
        payload: b"{\"x\":1}".to_vec(),
        ..Default::default()
    }
    .prepare("s", Mode::Push, "c@1", None, 1)
}

fn commit(ids: &[Option<&str>], idem: Option<&str>, cp: Option<&str>) -> Commit {
    Commit {
        source: "s".into(),
        events: ids.iter().map(|id| event(*id)).collect(),
        dedup_window: Duration::from_secs(60),
        idempotency: idem.map(|k| (k.to_string(), PushRecord::default())),
        checkpoint: cp.map(|c| (None, c.to_string())),
        since: None,
    }
}

#[tokio::test]
async fn offsets_dedup_and_checkpoints_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open_with(dir.path(), true, None).unwrap();
        let out = store
            .commit(commit(
                &[Some("a"), Some("b"), None],
                Some("k1"),
                Some("cp1"),
            ))
            .await
            .unwrap();
        let CommitOutcome::Stored { record, dropped } = out else {
            panic!("{out:?}")
        };
        assert_eq!(
            (record.first_offset, record.last_offset, dropped),
            (Some(1), Some(3), 0)
        );
        // Same key: the original answer, nothing written.
        let dup = store
            .commit(commit(&[Some("c")], Some("k1"), None))
            .await
            .unwrap();
        assert_eq!(dup, CommitOutcome::Duplicate(record.clone()));
        // Known ids are dropped in the same commit.
        let out = store
            .commit(commit(&[Some("a"), Some("d"), Some("d")], None, None))
            .await
            .unwrap();
        let CommitOutcome::Stored { record, dropped } = out else {
            panic!()
        };
        assert_eq!(
            (record.first_offset, record.events, dropped),
            (Some(4), 1, 2)
        );
    }
    let store = SledStore::open_with(dir.path(), true, None).unwrap();
    let lines = store.read("s", None, 100).await.unwrap();
    assert_eq!(
        lines.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let v: serde_json::Value = serde_json::from_slice(&lines[3].1).unwrap();
    assert_eq!(v["offset"], 4);
    assert_eq!(
        store.checkpoint("s", None).await.unwrap().unwrap().value(),
        "cp1"
    );
    assert!(store.idempotency("s", "k1").await.unwrap().is_some());
    let out = store.commit(commit(&[None], None, None)).await.unwrap();
    let CommitOutcome::Stored { record, .. } = out else {
        panic!()
    };
    assert_eq!(record.first_offset, Some(5));
    assert_eq!(store.read("s", Some(3), 1).await.unwrap()[0].0, 4);
}

#[tokio::test]
async fn concurrent_commits_get_distinct_increasing_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open_with(dir.path(), true, None).unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("k{}", i % 10);
                store
                    .commit(commit(&[None], Some(&key), None))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        if let CommitOutcome::Stored { .. } = t.await.unwrap() {
            stored += 1;
        }
    }
    assert_eq!(stored, 10, "one commit per idempotency key");
    let offsets: Vec<u64> = store
        .read("s", None, 100)
        .await
        .unwrap()
        .iter()
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(offsets, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_read_page_is_bounded_in_bytes_but_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), false, None).unwrap();
    let big = Event {
        payload: vec![b'x'; 5 << 20],
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    }
    .prepare("s", Mode::Push, "c@1", None, 1);
    let commit = Commit {
        source: "s".into(),
        events: vec![big.clone(), big.clone(), big],
        dedup_window: Duration::from_secs(60),
        idempotency: None,
        checkpoint: None,
        since: None,
    };
    store.commit(commit).await.unwrap();
    assert_eq!(store.read("s", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.read("s", Some(1), 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn expired_marks_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), true, None).unwrap();
    store
        .commit(commit(&[Some("a")], Some("k"), None))
        .await
        .unwrap();
    assert_eq!(store.collect_expired(now_ms()).await.unwrap(), 0);
    assert_eq!(store.collect_expired(now_ms() + 61_000).await.unwrap(), 2);
    assert!(store.idempotency("s", "k").await.unwrap().is_none());
}
