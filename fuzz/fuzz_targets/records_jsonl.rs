//! Operator input: an input set's records.jsonl (with the image files it
//! names), and the CSV / JSONL tables `match --table` reads.
//!
//! The input directory holds two images (`a.jpg`, `d/b.png`), a symlink
//! to one (`link.jpg`), a directory (`d`), and a FIFO (`fifo`). Whatever
//! records.jsonl says, an accepted record names a regular file inside the
//! directory, reached without `..`, an absolute path or a symlink, and no
//! two accepted records share an id.
//!
//! Input: mode byte, then bytes. Mode 0: records.jsonl; 1: a CSV table;
//! 2: a JSONL table; 3: a valid records.jsonl naming every kind of file
//! there, edited by the input (3 bytes per edit: a position and a value;
//! the value 0 cuts the text there).

#![no_main]

mod common;

use std::collections::HashSet;
use std::path::{Component, Path};
use std::sync::OnceLock;

use kakuri::batch::{Source, SourceReader};
use kakuri::input::InputReader;
use kakuri::record::Field;
use libfuzzer_sys::fuzz_target;

fn input_dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = common::fresh_dir("input");
        common::write(&d, "a.jpg", b"\xff\xd8a\xff\xd9");
        common::write(&d, "d/b.png", b"\x89PNGb");
        std::os::unix::fs::symlink("a.jpg", d.join("link.jpg")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        d
    })
}

fn records(jsonl: &[u8]) {
    let d = input_dir();
    std::fs::write(d.join("records.jsonl"), jsonl).unwrap();
    let Ok(mut r) = InputReader::open(d) else {
        return;
    };
    let root = r.root().to_path_buf();
    let mut ids = HashSet::new();
    for _ in 0..64 {
        let rec = match r.next_record() {
            Ok(Some(rec)) => rec,
            _ => break,
        };
        let p = Path::new(&rec.image_rel);
        assert!(
            p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
            "accepted an image path leaving the input directory"
        );
        let full = root.join(p);
        let md = std::fs::symlink_metadata(&full).expect("accepted image exists");
        assert!(
            md.file_type().is_file(),
            "accepted an image that is not a regular file"
        );
        let canon = full.canonicalize().unwrap();
        assert!(
            canon.starts_with(&root),
            "accepted an image outside the input"
        );
        assert_eq!(
            canon,
            full.components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect::<std::path::PathBuf>(),
            "accepted a path through a symlink"
        );
        assert_eq!(md.len(), rec.image_size);
        assert!(
            ids.insert(rec.record_id.clone()),
            "accepted a duplicate record id"
        );
        let _ =
            serde_json::from_str::<serde_json::Value>(rec.source.get()).expect("source is JSON");
    }
}

fn table(name: &str, bytes: &[u8], field: Field) {
    let d = common::scratch();
    let path = d.join(name);
    std::fs::write(&path, bytes).unwrap();
    let src = Source::Table {
        path,
        column: "c".into(),
        field,
    };
    let Ok(mut r) = SourceReader::open(&src) else {
        return;
    };
    for _ in 0..64 {
        match r.next_query() {
            Ok(Some(q)) => {
                assert_eq!(q.query.field(), field);
                let _ = q.query.value();
            }
            _ => break,
        }
    }
}

const VALID: &str = concat!(
    r#"{"record_id":"r1","image":"a.jpg","member_id":" M1 ","document_number":"１２-34 ab"}"#,
    "\n",
    r#"{"record_id":"r2","image":"d/b.png","doc_type":"passport"}"#,
    "\n\n",
    r#"{"record_id":3,"image":"./d/../a.jpg"}"#,
    "\n",
    r#"{"record_id":"r4","image":"link.jpg"}"#,
    "\n",
    r#"{"record_id":"r5","image":"fifo"}"#,
    "\n",
    r#"{"record_id":"r6","image":"/etc/hostname"}"#,
    "\n",
    r#"{"record_id":"r7","image":"d"}"#,
    "\r\n",
);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let field = [Field::MemberId, Field::DocumentNumber, Field::RecordId][(mode / 4 % 3) as usize];
    match mode % 4 {
        0 => records(rest),
        1 => table("table.csv", rest, field),
        2 => table("table.jsonl", rest, field),
        _ => records(&common::edited(VALID, rest)),
    }
});
