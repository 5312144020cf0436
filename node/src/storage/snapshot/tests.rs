//! Snapshot tests: a live log copied up to what is synced (simulated disk and a real one),
//! the manifest, the target checks and restore's refusals.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::sim::SimDisk;
use crate::storage::disk::{BackendChoice, DiskFile, OpenMode, SystemDisk};
use crate::storage::log::{AppendDurability, LogConfig, PartitionLog};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

fn batch(tag: u64) -> Bytes {
    let records: Vec<Record> = (0..2)
        .map(|number| Record {
            timestamp: 1000 + number,
            key: Some(Bytes::from(format!("key-{tag}"))),
            value: Some(Bytes::from(format!("value-{tag}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// Small segments, so a hundred batches make several.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        batch_bytes_max: 2048,
        commit_bytes_max: 4096,
        recovery_read_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Every batch's bytes from the log start to the high watermark.
async fn batches<D: Disk>(log: &PartitionLog<D>) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 100_000).await.unwrap();
        for item in ledge_protocol::BatchIter::new(&read.bytes) {
            let (header, bytes) = item.unwrap();
            offset = header.last_offset() + 1;
            out.push(Bytes::copy_from_slice(bytes));
        }
    }
    out
}

#[test]
fn a_live_log_is_copied_up_to_its_end_and_the_copy_opens_with_every_record() {
    // Goal: the copy holds every segment (sealed and active), the log start and the end,
    // and appends after the copy do not reach it.
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let live = PartitionLog::open(disk.clone(), Path::new("/data/logs/t-0"), config(), clock())
            .await
            .unwrap();
        for tag in 0..120 {
            live.append(batch(tag), AppendDurability::Synced)
                .await
                .unwrap();
        }
        live.delete_before(41).await.unwrap();
        assert!(live.segment_count() >= 3, "{}", live.segment_count());
        let expected = batches(&live).await;
        let copy = live
            .copy_synced_to(Path::new("/snap/logs/t-0"))
            .await
            .unwrap();
        assert_eq!(copy.end_offset, 240);
        assert_eq!(copy.log_start_offset, 41);
        // The simulated disk has no hard links: everything is copied.
        assert_eq!(copy.files_linked, 0);
        for tag in 120..130 {
            live.append(batch(tag), AppendDurability::Synced)
                .await
                .unwrap();
        }
        let restored =
            PartitionLog::open(disk.clone(), Path::new("/snap/logs/t-0"), config(), clock())
                .await
                .unwrap();
        assert_eq!(restored.high_watermark(), 240);
        assert_eq!(restored.log_start_offset(), 41);
        assert_eq!(batches(&restored).await, expected);
        // The copy takes appends of its own, from its end.
        let appended = restored
            .append(batch(999), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(appended.base_offset, 240);
    });
}

#[test]
fn written_but_unsynced_batches_are_not_copied() {
    // Goal: the copy stops at the synced end (the high watermark), never at written bytes
    // a crash could still take away.
    runtime().block_on(async {
        let disk = SimDisk::new(12);
        let live = PartitionLog::open(disk.clone(), Path::new("/data/logs/t-0"), config(), clock())
            .await
            .unwrap();
        for tag in 0..5 {
            live.append(batch(tag), AppendDurability::Synced)
                .await
                .unwrap();
        }
        // Written, not synced: the flush timer runs on the manual clock, which stands still.
        live.append(batch(5), AppendDurability::Written)
            .await
            .unwrap();
        assert_eq!(live.high_watermark(), 10);
        let copy = live
            .copy_synced_to(Path::new("/snap/logs/t-0"))
            .await
            .unwrap();
        assert_eq!(copy.end_offset, 10);
        let restored = PartitionLog::open(disk, Path::new("/snap/logs/t-0"), config(), clock())
            .await
            .unwrap();
        assert_eq!(restored.high_watermark(), 10);
        assert_eq!(batches(&restored).await.len(), 5);
    });
}

#[test]
fn sealed_segments_are_hard_linked_on_a_real_filesystem_and_the_active_one_copied() {
    runtime().block_on(async {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let disk = SystemDisk::detect(BackendChoice::Std).unwrap();
        let directory = root.path().join("data/logs/t-0");
        let live = PartitionLog::open(disk.clone(), &directory, config(), clock())
            .await
            .unwrap();
        for tag in 0..60 {
            live.append(batch(tag), AppendDurability::Synced)
                .await
                .unwrap();
        }
        let target = root.path().join("snap/logs/t-0");
        let copy = live.copy_synced_to(&target).await.unwrap();
        assert!(copy.files_linked >= 2, "{copy:?}");
        let first = crate::storage::segment::segment_file_name(0);
        assert_eq!(
            std::fs::metadata(directory.join(&first)).unwrap().ino(),
            std::fs::metadata(target.join(&first)).unwrap().ino(),
            "a sealed segment is linked"
        );
        let names: Vec<String> = disk.list_dir(&target).await.unwrap();
        let active = names
            .iter()
            .filter(|name| name.ends_with(".log"))
            .max()
            .unwrap();
        assert_ne!(
            std::fs::metadata(directory.join(active)).unwrap().ino(),
            std::fs::metadata(target.join(active)).unwrap().ino(),
            "the active segment is copied"
        );
        let expected = batches(&live).await;
        live.close().await.unwrap();
        let restored = PartitionLog::open(disk, &target, config(), clock())
            .await
            .unwrap();
        assert_eq!(batches(&restored).await, expected);
    });
}

#[test]
fn node_files_are_copied_without_the_lock_audit_log_logs_and_temporary_files() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let data = Path::new("/data");
        for (path, bytes) in [
            ("/data/metadata.json", &b"{}"[..]),
            ("/data/topics/orders.json", b"{}"),
            ("/data/security.json", b"{}"),
            ("/data/lock", b"pid"),
            ("/data/audit.log", b"a"),
            ("/data/metadata.json.tmp", b"x"),
            ("/data/logs/orders-0/00000000000000000000.log", b"x"),
        ] {
            let path = Path::new(path);
            disk.create_dir_all(path.parent().unwrap()).await.unwrap();
            let file = disk.open(path, OpenMode::CreateNew).await.unwrap();
            file.write_at(0, Bytes::copy_from_slice(bytes))
                .await
                .unwrap();
            file.sync_data().await.unwrap();
        }
        disk.create_dir_all(Path::new("/snap")).await.unwrap();
        let copied = copy_node_files(&disk, data, Path::new("/snap"))
            .await
            .unwrap();
        assert_eq!(copied, ["metadata.json", "security.json", "topics"]);
        assert_eq!(
            disk.list_dir(Path::new("/snap")).await.unwrap(),
            ["metadata.json", "security.json", "topics"]
        );
        let file = disk
            .open(Path::new("/snap/topics/orders.json"), OpenMode::Read)
            .await
            .unwrap();
        assert_eq!(file.read_at(0, 10).await.unwrap(), b"{}");
    });
}

fn manifest() -> Manifest {
    Manifest {
        format_version: SNAPSHOT_FORMAT_VERSION,
        node_id: 1,
        created_ms: 1_700_000_000_000,
        files: vec!["metadata.json".into()],
        partitions: vec![ManifestPartition {
            topic: "orders".into(),
            partition: 3,
            log_start_offset: 5,
            end_offset: 90,
            segment_bytes: 4096,
        }],
        offline: Vec::new(),
    }
}

#[test]
fn a_manifest_round_trips_and_damage_or_another_version_is_refused() {
    let bytes = manifest().encode();
    assert_eq!(Manifest::decode(&bytes).unwrap(), manifest());
    // Cut short: damage.
    let cut = Manifest::decode(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(cut, ManifestError::Damaged(_)), "{cut}");
    let mut newer = manifest();
    newer.format_version = 2;
    let refused = Manifest::decode(&newer.encode()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "the manifest is format version 2; this build reads version 1"
    );
    let mut backwards = manifest();
    backwards.partitions[0].end_offset = 4;
    assert!(matches!(
        Manifest::decode(&backwards.encode()),
        Err(ManifestError::Damaged(_))
    ));
    let mut escaping = manifest();
    escaping.files.push("../etc".into());
    assert!(matches!(
        Manifest::decode(&escaping.encode()),
        Err(ManifestError::Damaged(_))
    ));
    let mut bad_topic = manifest();
    bad_topic.partitions[0].topic = "../x".into();
    assert!(matches!(
        Manifest::decode(&bad_topic.encode()),
        Err(ManifestError::Damaged(_))
    ));
}

#[test]
fn a_snapshot_target_must_be_new_absolute_and_outside_the_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let reason = |target: &Path| match check_target(&data, target) {
        Err(SnapshotError::Target { reason, .. }) => reason,
        other => panic!("{target:?}: {other:?}"),
    };
    assert!(reason(Path::new("relative/snap")).contains("absolute"));
    assert!(reason(&data).contains("already exists"));
    assert!(reason(&data.join("inside")).contains("inside the data directory"));
    assert!(reason(&root.path().join("missing/snap")).contains("its parent"));
    check_target(&data, &root.path().join("snap")).unwrap();
}

/// A finished snapshot on a real filesystem: one partition, metadata, the manifest.
fn write_snapshot(directory: &Path) {
    std::fs::create_dir_all(directory.join("logs/orders-3")).unwrap();
    std::fs::write(
        directory.join("logs/orders-3/00000000000000000000.log"),
        b"x",
    )
    .unwrap();
    std::fs::write(directory.join("metadata.json"), b"{}").unwrap();
    std::fs::write(directory.join(MANIFEST_FILE_NAME), manifest().encode()).unwrap();
}

#[test]
fn restore_copies_a_finished_snapshot_into_a_new_directory() {
    let root = tempfile::tempdir().unwrap();
    let snapshot = root.path().join("snap");
    write_snapshot(&snapshot);
    let target = root.path().join("new");
    assert_eq!(restore(&snapshot, &target).unwrap(), manifest());
    assert_eq!(
        std::fs::read(target.join("logs/orders-3/00000000000000000000.log")).unwrap(),
        b"x"
    );
    assert!(target.join("metadata.json").exists());
    assert!(!target.join(MANIFEST_FILE_NAME).exists());
    // An empty directory is as good as a new one.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    restore(&snapshot, &empty).unwrap();
}

#[test]
fn restore_refuses_an_unfinished_damaged_or_incomplete_snapshot_and_a_used_target() {
    let root = tempfile::tempdir().unwrap();
    let snapshot = root.path().join("snap");
    write_snapshot(&snapshot);
    let target = root.path().join("new");

    let used = root.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("keep"), b"mine").unwrap();
    let error = restore(&snapshot, &used).unwrap_err();
    assert!(matches!(error, RestoreError::TargetNotEmpty(_)), "{error}");
    assert_eq!(std::fs::read(used.join("keep")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&used).unwrap().count(), 1);

    let manifest_path = snapshot.join(MANIFEST_FILE_NAME);
    let good = std::fs::read(&manifest_path).unwrap();
    std::fs::write(&manifest_path, &good[..good.len() - 5]).unwrap();
    let error = restore(&snapshot, &target).unwrap_err();
    assert!(
        error.to_string().contains("the manifest is damaged"),
        "{error}"
    );
    assert!(!target.exists());

    std::fs::write(&manifest_path, &good).unwrap();
    std::fs::remove_dir_all(snapshot.join("logs/orders-3")).unwrap();
    let error = restore(&snapshot, &target).unwrap_err();
    assert!(
        matches!(error, RestoreError::MissingPartition(..)),
        "{error}"
    );
    assert!(!target.exists());

    std::fs::remove_file(&manifest_path).unwrap();
    let error = restore(&snapshot, &target).unwrap_err();
    assert!(matches!(error, RestoreError::NoManifest(_)), "{error}");
    assert!(
        error.to_string().contains("is not a finished snapshot"),
        "{error}"
    );
    assert!(!target.exists());
}
