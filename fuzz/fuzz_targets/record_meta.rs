//! A sealed record's meta.json, as lookup, export, receipt verify and deep
//! verify read it, and the lookup-field normalisation applied to what it
//! holds. Normalising is idempotent: a normalised document number or
//! member id normalises to itself (the blind index relies on it).

#![no_main]

use kakuri::record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = record::record_hash(data);
    if let Ok(m) = record::parse_meta(data) {
        let f = record::fields_of(&m);
        for d in f.document_number.iter() {
            assert_eq!(&record::normalize_document_number(d), d);
        }
        for id in f.member_id.iter() {
            assert_eq!(&record::normalize_member_id(id), id);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let d = record::normalize_document_number(s);
        assert_eq!(record::normalize_document_number(&d), d);
        let m = record::normalize_member_id(s);
        assert_eq!(record::normalize_member_id(&m), m);
    }
});
