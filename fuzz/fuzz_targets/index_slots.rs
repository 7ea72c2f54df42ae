//! Fixed-size index slots: blind-index entries (keys.age) and record
//! locations (records.age), decoded from decrypted pages. Decoding any
//! slot-sized bytes works, and encoding is its inverse.

#![no_main]

use kakuri::index::{Entry, RecordLoc, ENTRY_LEN, RECORD_SLOT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for c in data.chunks_exact(ENTRY_LEN) {
        let e = Entry::decode(c);
        let mut out = [0u8; ENTRY_LEN];
        e.encode(&mut out);
        assert_eq!(&out[..], c);
    }
    for c in data.chunks_exact(RECORD_SLOT) {
        let l = RecordLoc::decode(c);
        assert_eq!(&l.encode()[..], c);
    }
});
