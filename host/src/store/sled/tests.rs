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

#[tokio::test]
async fn dead_letters_page_filter_trim_and_count_across_reopen() {
    use crate::store::dead_letters::{SCAN_MAX, test_letter};
    use crate::store::{DeadLetterFilter, DeadLetters as _};
    let dir = tempfile::tempdir().unwrap();
    let id = |n: u64| format!("{:013}-{:016x}", 1_000 + n, n);
    {
        let store = SledStore::open_with(dir.path(), true, None).unwrap();
        // More letters than one page looks at; every tenth is a trap.
        let total = SCAN_MAX as u64 + 500;
        for n in 0..total {
            let class = if n % 10 == 0 { "trap" } else { "invalid" };
            let dropped = store
                .put_dead_letter("s", &test_letter(&id(n), class, b"body"), u64::MAX)
                .await
                .unwrap();
            assert_eq!(dropped, 0);
        }
        let traps = DeadLetterFilter {
            class: Some("trap".into()),
            ..Default::default()
        };
        // A filtered listing is paged by what it looked at, and paging
        // finds every match exactly once.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .dead_letters("s", &traps, after.as_deref(), 1_000)
                .await
                .unwrap();
            seen.extend(page.letters.iter().map(|l| l.id.clone()));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len() as u64, total / 10);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        // Time filters come from the id.
        let window = DeadLetterFilter {
            since_ms: Some(1_010),
            until_ms: Some(1_020),
            ..Default::default()
        };
        let page = store.dead_letters("s", &window, None, 100).await.unwrap();
        assert_eq!(page.letters.len(), 10);
        // Removing and updating.
        assert!(store.remove_dead_letter("s", &id(0)).await.unwrap());
        assert!(!store.remove_dead_letter("s", &id(0)).await.unwrap());
        assert!(
            !store
                .update_dead_letter("s", &test_letter(&id(0), "trap", b""))
                .await
                .unwrap(),
            "a removed letter is not written back"
        );
        // Expiry by the time in the id.
        assert_eq!(store.expire_dead_letters("s", 1_100).await.unwrap(), 99);
        let stats = store.dead_letter_stats("s").await.unwrap();
        assert_eq!(stats.count, total - 100);
    }
    // Counted again from the tree after a restart; the byte bound drops
    // the oldest, never the new letter.
    let store = SledStore::open_with(dir.path(), true, None).unwrap();
    let stats = store.dead_letter_stats("s").await.unwrap();
    assert_eq!(stats.count, total_after_expiry());
    let big = test_letter(&id(1_000_000), "invalid", &vec![b'x'; 10_000]);
    let dropped = store.put_dead_letter("s", &big, 12_000).await.unwrap();
    let after = store.dead_letter_stats("s").await.unwrap();
    assert_eq!(after.count, stats.count + 1 - dropped);
    assert!(after.bytes <= 12_000 && after.count < 10, "{after:?}");
    assert_eq!(
        after.bytes,
        store
            .letter_sizes("s")
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>(),
        "the running count matches the tree"
    );
    // The oldest went: what is left is the newest.
    let left = store
        .dead_letters("s", &DeadLetterFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(left.letters.last().unwrap().id, big.id);
    assert_eq!(left.letters[0].id, id(2_500 - (after.count - 1)));
    assert!(store.dead_letter("s", &big.id).await.unwrap().is_some());
    assert_eq!(store.dead_letter_stats("other").await.unwrap().count, 0);
}

fn total_after_expiry() -> u64 {
    crate::store::dead_letters::SCAN_MAX as u64 + 500 - 100
}

#[tokio::test]
async fn offsets_never_repeat_after_trimming_everything_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let everything = Retention {
        max_age: None,
        max_bytes: Some(0),
    };
    {
        let store = SledStore::open_with(dir.path(), true, None).unwrap();
        store
            .commit(commit(&[None, None, None], None, None))
            .await
            .unwrap();
        // Nothing to trim yet: no mark is written.
        let kept = store
            .trim("s", &Retention::default(), now_ms())
            .await
            .unwrap();
        assert_eq!(kept.removed, 0);
        assert!(store.tree.get(key(b'o', "s", &[])).unwrap().is_none());
        let out = store.trim("s", &everything, now_ms()).await.unwrap();
        assert_eq!(out.removed, 3);
        assert!(store.read("s", None, 10).await.unwrap().is_empty());
    }
    // The journal is empty on disk; the offsets 1..=3 stay used.
    let store = SledStore::open_with(dir.path(), true, None).unwrap();
    assert_eq!(commit_one(&store).await, Some(4));
    // Trimming again moves the mark forward.
    assert_eq!(
        store
            .trim("s", &everything, now_ms())
            .await
            .unwrap()
            .removed,
        1
    );
    drop(store);
    let store = SledStore::open_with(dir.path(), true, None).unwrap();
    assert_eq!(commit_one(&store).await, Some(5));
}

/// Commits one event to `s` and returns its offset.
async fn commit_one(store: &SledStore) -> Option<u64> {
    match store.commit(commit(&[None], None, None)).await.unwrap() {
        CommitOutcome::Stored { record, .. } => record.first_offset,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_offset_mark_only_moves_up_and_not_after_a_failed_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("t").unwrap();
    let mark = |tree: &sled::Tree| {
        tree.get(key(b'o', "s", &[]))
            .unwrap()
            .map(|v| decode_u64(&v).unwrap())
    };
    let ok = OnceLock::new();
    compact::mark_end(&tree, &ok, "s", 20).unwrap();
    assert_eq!(mark(&tree), Some(21));
    // A trim that read an older last offset does not lower it.
    compact::mark_end(&tree, &ok, "s", 10).unwrap();
    assert_eq!(mark(&tree), Some(21));
    // After the writer failed, nothing is written (or flushed).
    let failed = OnceLock::new();
    failed.set("disk gone".to_string()).unwrap();
    let err = compact::mark_end(&tree, &failed, "s", 30).unwrap_err();
    assert!(err.to_string().contains("disk gone"), "{err}");
    assert_eq!(mark(&tree), Some(21));
}
