//! Deterministic synthetic leak sets, for `kakuri demo`, `kakuri synth` and
//! the benchmark.
//!
//! [`generate`] writes `DIR/records.jsonl` plus one JPEG-like image per
//! record under `DIR/images/`, shaped like the real case: a mix of driver's
//! licences, health insurance cards, passports and My Number cards, some
//! members with two documents (same name and birth date on both), Japanese
//! names, withdrawn members, the odd unknown field, and a few awkward file
//! names (Japanese, long, spaces).
//!
//! Everything is a pure function of `(seed, i)` per record: each record `i`
//! draws from its own PRNG derived from the seed and `i`, and its member is
//! computed from `i` alone. [`record`] therefore returns the identifiers of
//! any record without generating or reading the set, and two runs with the
//! same [`SynthSpec`] produce byte-identical output.
//!
//! Generation streams: one record and one image are generated, written and
//! dropped at a time, so memory does not grow with `count`.
//!
//! Uniqueness: record ids, image paths and document numbers embed `i`
//! (document numbers through a seeded permutation of `0..10^8`, so they look
//! random but never collide, across document types too). Hence
//! `count` is limited to [`MAX_COUNT`].
//!
//! The data is fake: names come from small tables of common names, and the
//! document numbers follow the shape, not the issuing rules, of real ones
//! (except the My Number check digit, which is computed properly).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    /// Number of records (and images).
    pub count: u64,
    /// Mean image size in bytes; each image is uniform in `[size/2, size*3/2]`,
    /// and at least [`MIN_IMAGE_SIZE`] bytes.
    pub image_size: u64,
    /// Seed of all randomness.
    pub seed: u64,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// Records written (lines of records.jsonl, and images).
    pub records: u64,
    /// Distinct member ids.
    pub members: u64,
    /// Total size of the images in bytes (records.jsonl not included).
    pub bytes: u64,
    /// Records per doc_type.
    pub doc_types: BTreeMap<String, u64>,
}

/// The identifiers of one synthetic record, as written by [`generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthRecord {
    /// `"rec-"` + 8-digit zero-padded record number.
    pub record_id: String,
    /// `"M"` + 8-digit zero-padded member number.
    pub member_id: String,
    /// As written in records.jsonl (not normalised).
    pub document_number: String,
    pub doc_type: String,
    /// Image path relative to the set directory (the `image` field).
    pub image_path: String,
}

/// Largest supported `count`: document numbers embed an 8-digit permutation
/// of the record number.
pub const MAX_COUNT: u64 = 100_000_000;

/// Smallest image generated, whatever `image_size` says.
pub const MIN_IMAGE_SIZE: u64 = 64;

/// Whether record `i` is a member's second document, i.e. shares its
/// `member_id` (and name and birth date) with record `i - 1`: every tenth
/// record, so 1 in 9 members (11%) has two documents.
pub fn is_second_document(i: u64) -> bool {
    i % 10 == 9
}

/// Member number of record `i`: dense (0, 1, 2, …) and unique per member.
/// `i / 10` records before `i` are second documents.
fn member_number(i: u64) -> u64 {
    if is_second_document(i) {
        member_number(i - 1)
    } else {
        i - i / 10
    }
}

/// Writes `DIR/records.jsonl` and `DIR/images/...` for `spec`. `dir` must
/// exist and be empty. `progress` is called after each record with the
/// number of records written so far.
pub fn generate(
    dir: &Path,
    spec: &SynthSpec,
    progress: &mut dyn FnMut(u64),
) -> io::Result<SynthSummary> {
    if spec.count > MAX_COUNT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("synthetic sets are limited to {MAX_COUNT} records"),
        ));
    }
    if fs::read_dir(dir)?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not empty", dir.display()),
        ));
    }

    let mut jsonl = BufWriter::with_capacity(1 << 16, File::create(dir.join("records.jsonl"))?);
    let mut dirs = DirCache::default();
    let mut image = Vec::new();
    let mut summary = SynthSummary::default();

    for i in 0..spec.count {
        let r = draw(spec, i);

        let path = dir.join(&r.image_path);
        if let Some(parent) = path.parent() {
            dirs.ensure(parent)?;
        }
        fill_image(&mut image, r.image_len, spec.seed, i);
        File::create(&path)?.write_all(&image)?;

        serde_json::to_writer(&mut jsonl, &Value::Object(r.to_json()))?;
        jsonl.write_all(b"\n")?;

        summary.records += 1;
        if !is_second_document(i) {
            summary.members += 1;
        }
        summary.bytes += r.image_len;
        *summary
            .doc_types
            .entry(r.doc_type.name().to_string())
            .or_insert(0) += 1;
        progress(i + 1);
    }
    jsonl.flush()?;
    Ok(summary)
}

/// The identifiers of record number `i` (0-based) of the set [`generate`]
/// writes for `spec`, computed without touching the disk.
///
/// # Panics
/// If `i >= MAX_COUNT`.
pub fn record(spec: &SynthSpec, i: u64) -> SynthRecord {
    assert!(i < MAX_COUNT, "synthetic record number out of range");
    let r = draw(spec, i);
    SynthRecord {
        record_id: r.record_id,
        member_id: r.member_id,
        document_number: r.document_number,
        doc_type: r.doc_type.name().to_string(),
        image_path: r.image_path,
    }
}

// ---------------------------------------------------------------------------
// PRNG

/// SplitMix64's output function: a good 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Independent PRNG streams: a record's metadata and image (keyed by record
/// number), a member's name and birth date (keyed by member number), and the
/// document-number permutation.
const STREAM_META: u64 = 1;
const STREAM_IMAGE: u64 = 2;
const STREAM_PERM: u64 = 3;
const STREAM_MEMBER: u64 = 4;

/// xoshiro256**, seeded through SplitMix64.
struct Rng([u64; 4]);

impl Rng {
    /// The PRNG of stream `stream` of record `i`.
    fn new(seed: u64, i: u64, stream: u64) -> Rng {
        let mut sm = mix64(seed ^ mix64(i.wrapping_mul(GOLDEN) ^ mix64(stream)));
        let mut next = || {
            sm = sm.wrapping_add(GOLDEN);
            mix64(sm)
        };
        let s = [next(), next(), next(), next()];
        // The all-zero state is the one xoshiro must avoid.
        Rng(if s == [0; 4] { [1, 2, 3, 4] } else { s })
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-high (bias below 2^-40 for
    /// the ranges used here).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn digit(&mut self) -> u8 {
        self.below(10) as u8
    }
}

/// A seeded permutation of `0..10^8`: a 4-round Feistel network on two
/// base-10^4 halves. Document numbers embed `permute(seed, i)`, so they look
/// random yet are unique per record.
fn permute(seed: u64, i: u64) -> u64 {
    const HALF: u64 = 10_000;
    debug_assert!(i < HALF * HALF);
    let key = mix64(seed ^ mix64(STREAM_PERM));
    let (mut l, mut r) = (i / HALF, i % HALF);
    for round in 0..4u64 {
        let f = mix64(r ^ key ^ round.wrapping_mul(GOLDEN)) % HALF;
        (l, r) = (r, (l + f) % HALF);
    }
    l * HALF + r
}

// ---------------------------------------------------------------------------
// Records

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DocType {
    DriversLicense,
    HealthInsurance,
    Passport,
    MyNumber,
}

impl DocType {
    /// ~62% / 30% / 5% / 3%, like the real case.
    fn draw(rng: &mut Rng) -> DocType {
        match rng.below(100) {
            0..=61 => DocType::DriversLicense,
            62..=91 => DocType::HealthInsurance,
            92..=96 => DocType::Passport,
            _ => DocType::MyNumber,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DocType::DriversLicense => "drivers_license",
            DocType::HealthInsurance => "health_insurance",
            DocType::Passport => "passport",
            DocType::MyNumber => "my_number",
        }
    }

    /// Folder name people actually use, for the odd Japanese paths.
    fn japanese(self) -> &'static str {
        match self {
            DocType::DriversLicense => "運転免許証",
            DocType::HealthInsurance => "健康保険証",
            DocType::Passport => "パスポート",
            DocType::MyNumber => "マイナンバーカード",
        }
    }
}

/// Common surnames: (kanji, katakana).
const SURNAMES: &[(&str, &str)] = &[
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
];

/// Common given names: (kanji, katakana).
const GIVEN_NAMES: &[(&str, &str)] = &[
    ("太郎", "タロウ"),
    ("花子", "ハナコ"),
    ("翔太", "ショウタ"),
    ("美咲", "ミサキ"),
    ("健", "ケン"),
    ("陽菜", "ヒナ"),
    ("大輔", "ダイスケ"),
    ("結衣", "ユイ"),
    ("誠", "マコト"),
    ("愛", "アイ"),
    ("拓也", "タクヤ"),
    ("さくら", "サクラ"),
    ("和也", "カズヤ"),
    ("由美子", "ユミコ"),
    ("浩", "ヒロシ"),
    ("恵子", "ケイコ"),
    ("隆", "タカシ"),
    ("明美", "アケミ"),
    ("蓮", "レン"),
    ("葵", "アオイ"),
    ("直樹", "ナオキ"),
    ("真由美", "マユミ"),
    ("修", "オサム"),
    ("裕子", "ユウコ"),
    ("悠斗", "ユウト"),
    ("彩", "アヤ"),
    ("勇気", "ユウキ"),
    ("舞", "マイ"),
    ("亮", "リョウ"),
    ("千尋", "チヒロ"),
];

/// Driver's licence issuing-area codes (first two digits).
const LICENSE_AREAS: &[&str] = &[
    "10", "20", "21", "30", "40", "45", "46", "50", "54", "62", "63", "70", "80", "90",
];

/// Passport number prefixes; indexed by the leading digit of the permuted
/// record number, which keeps passport numbers unique.
const PASSPORT_PREFIXES: [&str; 10] = ["TK", "TR", "TZ", "TS", "TH", "MZ", "MU", "ME", "MP", "TT"];

/// Free-text remarks an operator might have typed.
const NOTES: &[&str] = &[
    "再提出",
    "画像不鮮明",
    "裏面なし",
    "旧姓併記",
    "住所変更済み",
    "要確認",
];

/// One record, fully drawn.
struct Draw {
    record_id: String,
    member_id: String,
    doc_type: DocType,
    document_number: String,
    name_kana: String,
    birth_date: String,
    submitted_at: String,
    withdrawn_at: Option<String>,
    image_path: String,
    image_len: u64,
    note: Option<&'static str>,
}

impl Draw {
    /// The records.jsonl object, keys in their documented order.
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_string(), Value::String(v.to_string()));
        };
        put("record_id", &self.record_id);
        put("member_id", &self.member_id);
        put("doc_type", self.doc_type.name());
        put("document_number", &self.document_number);
        put("name_kana", &self.name_kana);
        put("birth_date", &self.birth_date);
        put("submitted_at", &self.submitted_at);
        if let Some(w) = &self.withdrawn_at {
            put("withdrawn_at", w);
        }
        put("image", &self.image_path);
        if let Some(n) = self.note {
            put("note", n);
        }
        m
    }
}

/// Draws record `i`. The order of the draws below is part of the output:
/// changing it changes every generated set.
fn draw(spec: &SynthSpec, i: u64) -> Draw {
    let member = member_number(i);
    let record_id = format!("rec-{i:08}");
    let member_id = format!("M{member:08}");

    // The person: drawn per member, so both documents of a member agree.
    let mut person = Rng::new(spec.seed, member, STREAM_MEMBER);
    let (surname_kanji, surname_kana) = *person.pick(SURNAMES);
    let (given_kanji, given_kana) = *person.pick(GIVEN_NAMES);
    let name_kana = format!("{surname_kana} {given_kana}");
    let first = date!(1940 - 01 - 01).to_julian_day();
    let last = date!(2004 - 12 - 31).to_julian_day();
    let birth = Date::from_julian_day(person.range(0, (last - first) as u64) as i32 + first)
        .expect("date in range");
    let birth_date = format!(
        "{:04}-{:02}-{:02}",
        birth.year(),
        birth.month() as u8,
        birth.day()
    );

    // The document.
    let mut rng = Rng::new(spec.seed, i, STREAM_META);
    let doc_type = DocType::draw(&mut rng);
    let document_number = document_number(&mut rng, doc_type, permute(spec.seed, i));

    let from = datetime!(2011-01-01 00:00 +9);
    let span = (datetime!(2022-01-01 00:00 +9) - from).whole_seconds() as u64;
    let submitted = from + Duration::seconds(rng.below(span) as i64);
    let withdrawn = rng
        .chance(400)
        .then(|| submitted + Duration::seconds(rng.range(3_600, 5 * 365 * 86_400) as i64));

    let lo = (spec.image_size / 2).max(MIN_IMAGE_SIZE);
    let hi = spec.image_size.saturating_add(spec.image_size / 2).max(lo);
    let image_len = rng.range(lo, hi);

    let shard = format!("{:05}", i / 1000);
    let image_path = match rng.below(1000) {
        // Japanese folder and file name.
        0..=4 => format!(
            "images/{}/{surname_kanji}_{given_kanji}_{record_id}.jpeg",
            doc_type.japanese()
        ),
        // A ~200-byte file name.
        5..=7 => {
            let mut name = format!("{record_id}_本人確認書類_{surname_kanji}{given_kanji}様");
            while name.len() < 190 {
                name.push_str("_再提出分");
            }
            format!("images/{}/{shard}/{name}.jpg", doc_type.name())
        }
        // Spaces, parentheses and an upper-case extension.
        8..=9 => format!("images/{}/{shard}/IMG {record_id} (1).JPG", doc_type.name()),
        _ => format!("images/{}/{shard}/{record_id}.jpg", doc_type.name()),
    };

    let note = rng.chance(30).then(|| *rng.pick(NOTES));

    Draw {
        record_id,
        member_id,
        doc_type,
        document_number,
        name_kana,
        birth_date,
        submitted_at: rfc3339(submitted),
        withdrawn_at: withdrawn.map(rfc3339),
        image_path,
        image_len,
        note,
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("timestamp in RFC 3339 range")
}

/// A document number of type `doc` embedding `n` (the permuted record
/// number, `< 10^8`), which makes it unique within the set.
///
/// - driver's licence: 12 digits, area code + `n` + check + reissue count;
/// - health insurance: `記号NNNNN 番号NNN`;
/// - passport: 2 letters + 7 digits;
/// - My Number: 12 digits, `n` at the same place as in licences (so the two
///   never collide) and a valid check digit.
fn document_number(rng: &mut Rng, doc: DocType, n: u64) -> String {
    match doc {
        DocType::DriversLicense => {
            let area = rng.pick(LICENSE_AREAS);
            let check = rng.digit();
            let reissue = if rng.chance(900) { 0 } else { rng.range(1, 3) };
            format!("{area}{n:08}{check}{reissue}")
        }
        DocType::HealthInsurance => format!("記号{:05} 番号{}", n / 1000, n % 1000),
        DocType::Passport => format!(
            "{}{:07}",
            PASSPORT_PREFIXES[(n / 10_000_000) as usize],
            n % 10_000_000
        ),
        DocType::MyNumber => {
            let mut d = [0u8; 12];
            d[0] = rng.digit();
            d[1] = rng.digit();
            for (k, c) in format!("{n:08}").bytes().enumerate() {
                d[2 + k] = c - b'0';
            }
            d[10] = rng.digit();
            d[11] = my_number_check_digit(&d[..11]);
            d.iter().map(|x| char::from(b'0' + x)).collect()
        }
    }
}

/// The My Number check digit of the first 11 digits (most significant first):
/// `11 - (Σ P_n·Q_n mod 11)`, or 0 when the remainder is ≤ 1, where `P_n` is
/// the n-th digit from the right and `Q_n` is `n + 1` (n ≤ 6) or `n - 5`.
fn my_number_check_digit(digits: &[u8]) -> u8 {
    debug_assert_eq!(digits.len(), 11);
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &p)| {
            let n = k as u32 + 1;
            p as u32 * if n <= 6 { n + 1 } else { n - 5 }
        })
        .sum();
    match sum % 11 {
        0 | 1 => 0,
        r => (11 - r) as u8,
    }
}

// ---------------------------------------------------------------------------
// Images

/// Start of image + a minimal JFIF APP0 segment (v1.01, 72 dpi, no thumbnail).
const JPEG_HEADER: [u8; 20] = [
    0xFF, 0xD8, // SOI
    0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, // APP0, length 16, "JFIF\0"
    0x01, 0x01, 0x01, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00, // v1.01, dpi, 72x72, no thumbnail
];
/// End of image.
const JPEG_TRAILER: [u8; 2] = [0xFF, 0xD9];

/// Fills `buf` with the `len`-byte image of record `i`: JFIF header,
/// incompressible pseudo-random "entropy data", EOI marker. `buf` is reused
/// across records, so its capacity is bounded by the largest image.
fn fill_image(buf: &mut Vec<u8>, len: u64, seed: u64, i: u64) {
    let len = len as usize;
    debug_assert!(len >= JPEG_HEADER.len() + JPEG_TRAILER.len());
    buf.clear();
    buf.resize(len, 0);
    buf[..JPEG_HEADER.len()].copy_from_slice(&JPEG_HEADER);
    let body_end = len - JPEG_TRAILER.len();
    let mut rng = Rng::new(seed, i, STREAM_IMAGE);
    let mut chunks = buf[JPEG_HEADER.len()..body_end].chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let tail = rng.next_u64().to_le_bytes();
    rest.copy_from_slice(&tail[..rest.len()]);
    buf[body_end..].copy_from_slice(&JPEG_TRAILER);
}

/// Remembers recently created directories so that most images cost no
/// `create_dir_all`. Bounded: cleared when full.
#[derive(Default)]
struct DirCache(std::collections::HashSet<std::path::PathBuf>);

impl DirCache {
    const LIMIT: usize = 64;

    fn ensure(&mut self, dir: &Path) -> io::Result<()> {
        if !self.0.contains(dir) {
            fs::create_dir_all(dir)?;
            if self.0.len() >= Self::LIMIT {
                self.0.clear();
            }
            self.0.insert(dir.to_path_buf());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn spec(count: u64, image_size: u64, seed: u64) -> SynthSpec {
        SynthSpec {
            count,
            image_size,
            seed,
        }
    }

    /// All files under `dir`, relative path → bytes, sorted.
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    fn lines(dir: &Path) -> Vec<Map<String, Value>> {
        fs::read_to_string(dir.join("records.jsonl"))
            .unwrap()
            .lines()
            .map(|l| match serde_json::from_str(l).unwrap() {
                Value::Object(m) => m,
                v => panic!("not an object: {v}"),
            })
            .collect()
    }

    #[test]
    fn generation_is_deterministic() {
        let s = spec(50, 2048, 7);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sa = generate(a.path(), &s, &mut |_| {}).unwrap();
        let sb = generate(b.path(), &s, &mut |_| {}).unwrap();
        assert_eq!(sa, sb);
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(fa.len(), 51);
        assert_eq!(fa, fb);

        let c = tempfile::tempdir().unwrap();
        generate(c.path(), &spec(50, 2048, 8), &mut |_| {}).unwrap();
        assert_ne!(
            fa["records.jsonl"],
            files(c.path())["records.jsonl"],
            "seed must matter"
        );
    }

    #[test]
    fn record_agrees_with_records_jsonl_and_files() {
        let s = spec(400, 256, 42);
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        let summary = generate(dir.path(), &s, &mut |n| seen.push(n)).unwrap();
        assert_eq!(seen, (1..=400).collect::<Vec<_>>());

        let lines = lines(dir.path());
        assert_eq!(lines.len(), 400);
        let mut bytes = 0;
        let mut doc_types = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            let r = record(&s, i as u64);
            assert_eq!(line["record_id"], r.record_id.as_str());
            assert_eq!(line["member_id"], r.member_id.as_str());
            assert_eq!(line["doc_type"], r.doc_type.as_str());
            assert_eq!(line["document_number"], r.document_number.as_str());
            assert_eq!(line["image"], r.image_path.as_str());
            bytes += fs::metadata(dir.path().join(&r.image_path)).unwrap().len();
            *doc_types.entry(r.doc_type).or_insert(0) += 1;

            let keys: Vec<&str> = line.keys().map(String::as_str).collect();
            let mut want = vec![
                "record_id",
                "member_id",
                "doc_type",
                "document_number",
                "name_kana",
                "birth_date",
                "submitted_at",
            ];
            if line.contains_key("withdrawn_at") {
                want.push("withdrawn_at");
            }
            want.push("image");
            if line.contains_key("note") {
                want.push("note");
            }
            assert_eq!(keys, want);
        }
        assert_eq!(summary.records, 400);
        assert_eq!(summary.members, 360);
        assert_eq!(summary.bytes, bytes);
        assert_eq!(summary.doc_types, doc_types);
        assert_eq!(files(dir.path()).len(), 401);
    }

    #[test]
    fn fields_are_well_formed() {
        let s = spec(400, 256, 3);
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &s, &mut |_| {}).unwrap();
        let (mut withdrawn, mut notes) = (0, 0);
        for line in lines(dir.path()) {
            let name = line["name_kana"].as_str().unwrap();
            let (family, given) = name.split_once(' ').unwrap();
            assert!(
                family
                    .chars()
                    .chain(given.chars())
                    .all(|c| ('\u{30A1}'..='\u{30FC}').contains(&c)),
                "{name}"
            );

            let birth = line["birth_date"].as_str().unwrap();
            assert_eq!(birth.len(), 10);
            assert!(("1940-01-01"..="2004-12-31").contains(&birth), "{birth}");

            let submitted =
                OffsetDateTime::parse(line["submitted_at"].as_str().unwrap(), &Rfc3339).unwrap();
            assert!((2011..=2021).contains(&submitted.year()));
            if let Some(w) = line.get("withdrawn_at") {
                withdrawn += 1;
                assert!(OffsetDateTime::parse(w.as_str().unwrap(), &Rfc3339).unwrap() > submitted);
            }
            notes += line.contains_key("note") as u32;
        }
        assert!(
            (120..=200).contains(&withdrawn),
            "withdrawn {withdrawn}/400"
        );
        assert!((1..=40).contains(&notes), "notes {notes}/400");
    }

    #[test]
    fn doc_type_mix_is_roughly_right() {
        let s = spec(10_000, 65_536, 1);
        let mut n = BTreeMap::new();
        for i in 0..s.count {
            *n.entry(record(&s, i).doc_type).or_insert(0u64) += 1;
        }
        let pct = |k: &str| n[k] as f64 / 100.0;
        assert!((59.0..65.0).contains(&pct("drivers_license")), "{n:?}");
        assert!((27.0..33.0).contains(&pct("health_insurance")), "{n:?}");
        assert!((4.0..6.5).contains(&pct("passport")), "{n:?}");
        assert!((2.0..4.0).contains(&pct("my_number")), "{n:?}");
    }

    #[test]
    fn identifiers_and_paths_are_unique_and_valid() {
        let s = spec(20_000, 65_536, 9);
        let (mut ids, mut docs, mut paths) = (HashSet::new(), HashSet::new(), HashSet::new());
        let mut odd = 0;
        for i in 0..s.count {
            let r = record(&s, i);
            assert_eq!(r.record_id, format!("rec-{i:08}"));
            assert!(r.member_id.len() == 9 && r.member_id.starts_with('M'));
            let d = &r.document_number;
            match r.doc_type.as_str() {
                "drivers_license" => assert!(
                    d.len() == 12 && d.bytes().all(|b| b.is_ascii_digit()),
                    "{d}"
                ),
                "my_number" => {
                    assert!(
                        d.len() == 12 && d.bytes().all(|b| b.is_ascii_digit()),
                        "{d}"
                    );
                    let digits: Vec<u8> = d.bytes().map(|b| b - b'0').collect();
                    assert_eq!(my_number_check_digit(&digits[..11]), digits[11], "{d}");
                }
                "passport" => {
                    assert!(
                        d.len() == 9 && d[..2].bytes().all(|b| b.is_ascii_uppercase()),
                        "{d}"
                    );
                    assert!(d[2..].bytes().all(|b| b.is_ascii_digit()), "{d}");
                }
                "health_insurance" => assert!(d.starts_with("記号") && d.contains(" 番号"), "{d}"),
                t => panic!("unknown doc_type {t}"),
            }
            assert!(r.image_path.starts_with("images/"));
            assert!(r
                .image_path
                .split('/')
                .all(|c| !c.is_empty() && c.len() < 255 && c != "." && c != ".."));
            if !r.image_path.ends_with(&format!("/{}.jpg", r.record_id)) {
                odd += 1;
            }
            assert!(ids.insert(r.record_id));
            assert!(docs.insert(r.document_number));
            assert!(paths.insert(r.image_path));
        }
        assert!((100..=320).contains(&odd), "odd names {odd}/20000");
        assert!(paths.iter().any(|p| p.starts_with("images/運転免許証/")));
        assert!(paths.iter().any(|p| p.len() > 200));
        assert!(paths.iter().any(|p| p.ends_with(" (1).JPG")));
    }

    #[test]
    fn images_are_jpeg_like_and_sized_in_range() {
        let s = spec(200, 1000, 5);
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &s, &mut |_| {}).unwrap();
        let mut total = 0;
        for i in 0..s.count {
            let img = fs::read(dir.path().join(record(&s, i).image_path)).unwrap();
            assert_eq!(&img[..4], &[0xFF, 0xD8, 0xFF, 0xE0]);
            assert_eq!(&img[6..11], b"JFIF\0");
            assert_eq!(&img[img.len() - 2..], &[0xFF, 0xD9]);
            assert!((500..=1500).contains(&img.len()), "{}", img.len());
            total += img.len();
        }
        let mean = total / s.count as usize;
        assert!((850..=1150).contains(&mean), "mean {mean}");

        // Tiny sizes are raised to the minimum.
        let mut buf = Vec::new();
        let r = draw(&spec(1, 0, 5), 0);
        assert_eq!(r.image_len, MIN_IMAGE_SIZE);
        fill_image(&mut buf, r.image_len, 5, 0);
        assert_eq!(buf.len(), 64);
        assert_eq!(&buf[62..], &[0xFF, 0xD9]);
    }

    #[test]
    fn image_bytes_look_incompressible() {
        let mut buf = Vec::new();
        fill_image(&mut buf, 1 << 16, 11, 3);
        let mut hist = [0u32; 256];
        buf.iter().for_each(|&b| hist[b as usize] += 1);
        // 256 expected per value; allow wide statistical slack.
        assert!(hist.iter().all(|&c| (150..=370).contains(&c)), "{hist:?}");
    }

    #[test]
    fn about_a_tenth_of_members_have_two_records() {
        let s = spec(10_000, 1024, 2);
        let mut per_member: BTreeMap<String, u32> = BTreeMap::new();
        for i in 0..s.count {
            *per_member.entry(record(&s, i).member_id).or_insert(0) += 1;
        }
        let two = per_member.values().filter(|&&n| n == 2).count() as f64;
        assert!(per_member.values().all(|&n| n <= 2));
        assert_eq!(per_member.len(), 9_000);
        let share = two / per_member.len() as f64;
        assert!((0.09..0.13).contains(&share), "{share}");
        assert_eq!(record(&s, 9).member_id, record(&s, 8).member_id);
        assert_ne!(record(&s, 10).member_id, record(&s, 9).member_id);
        for i in (9..s.count).step_by(10) {
            let (a, b) = (draw(&s, i - 1), draw(&s, i));
            assert_eq!((a.name_kana, a.birth_date), (b.name_kana, b.birth_date));
            assert_ne!(a.document_number, b.document_number);
        }
    }

    #[test]
    fn permutation_is_a_bijection_on_a_sample() {
        let mut seen = HashSet::new();
        for i in (0..MAX_COUNT).step_by(997).chain(0..10_000) {
            let p = permute(123, i);
            assert!(p < MAX_COUNT);
            seen.insert((i, p));
        }
        let ps: HashSet<u64> = seen.iter().map(|&(_, p)| p).collect();
        let is: HashSet<u64> = seen.iter().map(|&(i, _)| i).collect();
        assert_eq!(ps.len(), is.len());
    }

    #[test]
    fn refuses_a_non_empty_or_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), b"").unwrap();
        let e = generate(dir.path(), &spec(1, 100, 0), &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = generate(&dir.path().join("missing"), &spec(1, 100, 0), &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
