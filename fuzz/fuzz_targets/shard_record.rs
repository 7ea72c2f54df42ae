//! One record inside a shard, as lookup, export and deep verify read it:
//! a zstd frame bounded by the size the index records, holding a tar of
//! exactly two entries (meta.json and the image) for the record's
//! ordinal, and the meta.json inside.
//!
//! Input: a mode byte, the ordinal (1 byte), and the bytes, which start
//! at the fifth byte. The claimed plaintext length (the bound) is read
//! little endian from the third to fifth bytes (the fifth, 0 if absent, is
//! also the first of the bytes), with 0xff as its top byte when the
//! ordinal is a multiple of 8 and 0 otherwise. Mode 0: the bytes are the
//! tar; mode 1: a zstd frame (decompressed, then parsed as in mode 0);
//! mode 2: the bytes, split at the claimed length into meta and image, are
//! packed into a record tar by kakuri itself, compressed, and must come
//! back unchanged.

#![no_main]

use kakuri::{record, shard};
use libfuzzer_sys::fuzz_target;

fn parse_tar(ordinal: u64, tar: &[u8]) {
    if let Ok(r) = shard::parse_record_tar(ordinal, tar, "shards/000000.tar.zst.age") {
        assert!(r.image_name.starts_with(&shard::entry_dir(ordinal)));
        if let Ok(m) = record::parse_meta(&r.meta) {
            let _ = record::fields_of(&m);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (mode, ordinal) = (data[0] % 3, data[1] as u64);
    // The size the index claims: up to 2^24, or any u32 for one input in
    // eight (decompress_frame then streams, so memory follows what the
    // frame yields, not the claim).
    let claimed = if data[1].is_multiple_of(8) {
        u32::from_le_bytes([data[2], data[3], data.get(4).copied().unwrap_or(0), 0xff])
    } else {
        u32::from_le_bytes([data[2], data[3], data.get(4).copied().unwrap_or(0), 0])
    };
    let bytes = &data[4..];
    match mode {
        0 => parse_tar(ordinal, bytes),
        1 => {
            if let Ok(tar) = shard::decompress_frame(bytes, claimed, "record") {
                assert_eq!(tar.len(), claimed as usize);
                parse_tar(ordinal, &tar);
            }
        }
        _ => {
            let split = (claimed as usize).min(bytes.len());
            let (meta, image) = bytes.split_at(split);
            let ext = if ordinal % 2 == 0 { Some("jpg") } else { None };
            let tar = shard::record_tar(ordinal, meta, image, ext, 0).expect("record tar");
            let frame = zstd::bulk::compress(&tar, 3).expect("compress");
            let back =
                shard::decompress_frame(&frame, tar.len() as u32, "record").expect("own frame");
            let r = shard::parse_record_tar(ordinal, &back, "s").expect("own tar");
            assert_eq!(r.meta, meta);
            assert_eq!(r.image, image);
        }
    }
});
