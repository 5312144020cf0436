use std::path::Path;

use super::*;
use crate::sim::SimDisk;

const DATA_DIR: &str = "/data";

async fn write(disk: &SimDisk, contents: &[u8]) {
    let path = Path::new(DATA_DIR).join(STORAGE_ID_FILE);
    let _ = disk.remove_file(&path).await;
    let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
    file.write_at(0, Bytes::copy_from_slice(contents))
        .await
        .unwrap();
    file.sync_data().await.unwrap();
}

#[tokio::test]
async fn an_id_is_drawn_once_and_read_back_on_every_later_start() {
    // Goal: the first start stores the drawn id durably; later starts read it, never draw.
    let disk = SimDisk::new(1);
    let data_dir = Path::new(DATA_DIR);
    let first = load_or_create_with(&disk, data_dir, || Some([7; 16]))
        .await
        .unwrap();
    assert_eq!(first, StorageId([7; 16]));
    disk.crash();
    let again = load_or_create_with(&disk, data_dir, || {
        panic!("an existing id is never redrawn")
    })
    .await
    .unwrap();
    assert_eq!(again, first);
    let text = disk.contents(&data_dir.join(STORAGE_ID_FILE)).unwrap();
    assert_eq!(text.len(), FILE_BYTES);
    assert!(text.starts_with(b"ledge-storage-id 1 07070707"));
}

#[tokio::test]
async fn a_power_loss_while_drawing_leaves_no_id_or_the_whole_id() {
    // Goal: cut power after every operation of the first start: the next start reads the
    // id that was returned (if one was), or draws again; it never finds a damaged file.
    let data_dir = Path::new(DATA_DIR);
    for operations in 0..10 {
        for seed in 0..4 {
            let disk = SimDisk::new(seed * 100 + operations);
            disk.power_off_after(operations);
            let stored = load_or_create_with(&disk, data_dir, || Some([5; 16])).await;
            disk.crash();
            let read = load_or_create_with(&disk, data_dir, || Some([6; 16]))
                .await
                .unwrap_or_else(|error| panic!("ops {operations} seed {seed}: {error}"));
            match stored {
                Ok(id) => assert_eq!(read, id, "ops {operations} seed {seed}"),
                Err(_) => assert!(read == StorageId([5; 16]) || read == StorageId([6; 16])),
            }
        }
    }
}

#[tokio::test]
async fn a_damaged_file_refuses_the_start_in_one_line_and_is_left_alone() {
    // Goal: any damage (a flipped digit, a cut line, garbage, another version, an oversized
    // file) is refused with one line naming the file; nothing is redrawn or rewritten.
    let disk = SimDisk::new(2);
    let data_dir = Path::new(DATA_DIR);
    load_or_create_with(&disk, data_dir, || Some([7; 16]))
        .await
        .unwrap();
    let path = data_dir.join(STORAGE_ID_FILE);
    let good = String::from_utf8(disk.contents(&path).unwrap()).unwrap();
    let flipped = good.replacen("0707", "0717", 1);
    let oversized = format!("{good}{good}");
    let cases = [
        flipped.as_str(),
        &good[..good.len() - 5],
        "",
        "garbage\n",
        &good.replacen(" 1 ", " 2 ", 1),
        oversized.as_str(),
    ];
    for damaged in cases {
        write(&disk, damaged.as_bytes()).await;
        let error = load_or_create_with(&disk, data_dir, || Some([9; 16]))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, StorageIdError::Damaged { .. }), "{message}");
        assert!(message.contains("/data/storage-id is damaged"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(disk.contents(&path).unwrap(), damaged.as_bytes());
    }
}

#[tokio::test]
async fn a_missing_file_in_a_directory_with_partitions_is_drawn_anew() {
    // Goal: an upgraded data directory (partitions, no id) gets an id, stored durably.
    let disk = SimDisk::new(3);
    let data_dir = Path::new(DATA_DIR);
    create_dir_durable(&disk, &data_dir.join("logs/orders-0"))
        .await
        .unwrap();
    assert!(holds_data(&disk, data_dir).await);
    let id = load_or_create_with(&disk, data_dir, || Some([3; 16]))
        .await
        .unwrap();
    assert_eq!(
        load_or_create_with(&disk, data_dir, || None).await.unwrap(),
        id,
        "read back, not drawn"
    );
    let empty = SimDisk::new(4);
    assert!(!holds_data(&empty, data_dir).await);
    assert!(matches!(
        load_or_create_with(&empty, data_dir, || None).await,
        Err(StorageIdError::Random(_))
    ));
}
