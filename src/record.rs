//! One record as sealed: its metadata document (`meta.json`), its hash, and
//! the lookup fields derived from it.
//!
//! The record hash is `BLAKE3(meta.json bytes)`; `meta.json` names the
//! image's BLAKE3 and size, so the hash binds the image too. Anyone can check
//! an exported record with `b3sum` alone.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::merkle::Hash;

/// Format tag inside every meta.json.
pub const META_FORMAT: &str = "kakuri-record-v1";

/// The metadata document sealed next to each image.
#[derive(Serialize, Deserialize, Debug)]
pub struct Meta<'a> {
    pub format: std::borrow::Cow<'a, str>,
    /// Position in the vault (0-based), also the Merkle leaf index.
    pub ordinal: u64,
    pub record_id: String,
    /// The image path as given in the input (relative to the input dir).
    pub image_path: String,
    pub image_size: u64,
    /// BLAKE3 of the image bytes, lowercase hex.
    pub image_blake3: String,
    /// The input line, verbatim (or a synthesized object in directory mode).
    #[serde(borrow)]
    pub source: &'a RawValue,
}

/// The lookup fields of a record, normalised for the blind index.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub member_id: Option<String>,
    pub document_number: Option<String>,
    pub doc_type: Option<String>,
}

/// Which field an index key was made from; part of the keyed-hash input so
/// that a member id can never match a document number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Field {
    RecordId = 1,
    MemberId = 2,
    DocumentNumber = 3,
    ImageHash = 4,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::RecordId => "record_id",
            Field::MemberId => "member_id",
            Field::DocumentNumber => "document_number",
            Field::ImageHash => "image",
        }
    }
}

/// Member ids: surrounding white space removed.
pub fn normalize_member_id(s: &str) -> String {
    s.trim().to_string()
}

/// Document numbers: full-width ASCII (U+FF01..U+FF5E) folded to ASCII,
/// spaces (including U+3000) and hyphens/dashes removed, letters upper-cased.
/// "１２３４-５６７８" and "1234 5678" thus both become "12345678".
pub fn normalize_document_number(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = match c as u32 {
                0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                _ => c,
            };
            match c {
                ' '
                | '\t'
                | '\u{3000}'
                | '-'
                | '\u{2010}'..='\u{2015}'
                | '\u{2212}'
                | '\u{30FC}' => None,
                c => Some(c.to_ascii_uppercase()),
            }
        })
        .collect()
}

/// Reads a string-or-integer JSON value as text; `None` for null/absent.
pub fn scalar_text(
    v: Option<&serde_json::Value>,
) -> std::result::Result<Option<String>, &'static str> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err("must be a string or an integer"),
    }
}

/// BLAKE3 of the meta.json bytes: the record hash and Merkle leaf input.
pub fn record_hash(meta_json: &[u8]) -> Hash {
    *blake3::hash(meta_json).as_bytes()
}

/// Parses a sealed meta.json; the error never quotes its content.
pub fn parse_meta(bytes: &[u8]) -> Result<Meta<'_>> {
    let m: Meta = serde_json::from_slice(bytes).map_err(|e| {
        Error::integrity(format!(
            "sealed metadata is not valid (column {})",
            e.column()
        ))
    })?;
    if m.format != META_FORMAT {
        return Err(Error::integrity(
            "sealed metadata has an unknown format tag",
        ));
    }
    Ok(m)
}

/// Lookup fields of a sealed record, read back from its `source`.
pub fn fields_of(meta: &Meta<'_>) -> Fields {
    let v: serde_json::Value = serde_json::from_str(meta.source.get()).unwrap_or_default();
    let get = |k: &str| scalar_text(v.get(k)).ok().flatten();
    Fields {
        member_id: get("member_id")
            .map(|s| normalize_member_id(&s))
            .filter(|s| !s.is_empty()),
        document_number: get("document_number")
            .map(|s| normalize_document_number(&s))
            .filter(|s| !s.is_empty()),
        doc_type: get("doc_type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_numbers_fold_width_space_and_dashes() {
        assert_eq!(
            normalize_document_number("１２３４-５６７８　９０"),
            "1234567890"
        );
        assert_eq!(normalize_document_number(" tk 12-34 "), "TK1234");
        assert_eq!(normalize_document_number("AB1234"), "AB1234");
    }

    #[test]
    fn scalar_text_accepts_strings_and_integers_only() {
        let v = serde_json::json!({"a": "x", "b": 12, "c": 1.5, "d": null, "e": [1]});
        assert_eq!(scalar_text(v.get("a")).unwrap().as_deref(), Some("x"));
        assert_eq!(scalar_text(v.get("b")).unwrap().as_deref(), Some("12"));
        assert!(scalar_text(v.get("c")).is_err());
        assert_eq!(scalar_text(v.get("d")).unwrap(), None);
        assert_eq!(scalar_text(v.get("zz")).unwrap(), None);
        assert!(scalar_text(v.get("e")).is_err());
    }
}
