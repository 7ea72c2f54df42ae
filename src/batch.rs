//! `match`: secondary-damage checks at scale. A source of queries (files
//! found elsewhere, matched by content hash; or a CSV/JSONL column of
//! member ids, document numbers or record ids) is streamed in batches;
//! each batch is blinded and sorted so the index is walked in key order,
//! then the hits are read in record order across all cores, each verified
//! like a lookup (content hash, record hash, Merkle tree to the signed
//! root).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::index::KEY_LEN;
use crate::lookup::{self, Lookup, Opened, Query};
use crate::record::{self, Field};

/// Queries blinded and sorted at once; bounds memory for any source size.
pub const BATCH: usize = 1 << 16;

#[derive(Clone, Debug)]
pub enum Source {
    /// Every regular file under the directory, matched by content.
    Dir(PathBuf),
    /// One column of a CSV file (with a header row) or one key of a JSONL file.
    Table {
        path: PathBuf,
        column: String,
        field: Field,
    },
}

/// One query from the source: where it came from and what it asks.
pub struct SourceQuery {
    /// 1-based line (tables) or file number in sorted order (directories).
    pub n: u64,
    /// The file's path relative to the source directory (directories only).
    pub label: Option<String>,
    pub query: Query,
}

#[derive(Serialize, Debug, Clone)]
pub struct Hit {
    pub query: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub record_id: String,
    pub ordinal: u64,
    pub shard: String,
    pub record_hash: String,
    pub verified: bool,
}

#[derive(Serialize, Debug, Default)]
pub struct Summary {
    pub queries: u64,
    pub queries_matched: u64,
    pub queries_not_found: u64,
    pub records_matched: u64,
    /// Keyed BLAKE3 of the field and every normalised query value, in order.
    pub source_hash: String,
}

/// Streams queries from a source.
pub struct SourceReader {
    inner: SourceInner,
    n: u64,
}

enum SourceInner {
    Dir {
        root: PathBuf,
        walk: walkdir::IntoIter,
    },
    Csv {
        rdr: csv::Reader<RecordBudget<std::fs::File>>,
        col: usize,
        field: Field,
        name: String,
        /// Bytes the parser has pulled since the last whole record.
        used: Arc<AtomicU64>,
        /// Line of the last whole record (the header is line 1).
        line: u64,
    },
    Jsonl {
        lines: std::io::BufReader<std::fs::File>,
        key: String,
        field: Field,
        name: String,
    },
}

fn query_for(field: Field, value: String) -> Query {
    match field {
        Field::MemberId => Query::MemberId(value),
        Field::DocumentNumber => Query::DocumentNumber(value),
        _ => Query::RecordId(value),
    }
}

impl SourceReader {
    pub fn open(src: &Source) -> Result<Self> {
        let inner = match src {
            Source::Dir(d) => {
                if !d.is_dir() {
                    return Err(Error::input(format!("{}: not a directory", d.display())));
                }
                SourceInner::Dir {
                    root: d.clone(),
                    walk: crate::input::walk_sorted(d),
                }
            }
            Source::Table {
                path,
                column,
                field,
            } => {
                let name = path.display().to_string();
                let f = std::fs::File::open(path).map_err(|e| Error::io(path, "cannot read", e))?;
                let is_jsonl = path
                    .extension()
                    .is_some_and(|e| e == "jsonl" || e == "ndjson");
                if is_jsonl {
                    SourceInner::Jsonl {
                        lines: std::io::BufReader::new(f),
                        key: column.clone(),
                        field: *field,
                        name,
                    }
                } else {
                    let used = Arc::new(AtomicU64::new(0));
                    let mut rdr = csv::ReaderBuilder::new()
                        .flexible(true)
                        .buffer_capacity(CSV_BUFFER)
                        .from_reader(RecordBudget {
                            inner: f,
                            used: used.clone(),
                        });
                    let headers = rdr.headers().map_err(|e| {
                        if over_budget(&used) {
                            Error::input(format!(
                                "{name}: the CSV header is longer than {} bytes",
                                crate::input::MAX_LINE
                            ))
                        } else {
                            Error::input(format!("{name}: cannot read the CSV header ({e})"))
                        }
                    })?;
                    let col = headers
                        .iter()
                        .position(|h| h.trim() == column)
                        .ok_or_else(|| {
                            Error::input(format!(
                                "{name}: no column named {column:?} in the header"
                            ))
                        })?;
                    used.store(0, Ordering::Relaxed);
                    SourceInner::Csv {
                        rdr,
                        col,
                        field: *field,
                        name,
                        used,
                        line: 1,
                    }
                }
            }
        };
        Ok(SourceReader { inner, n: 0 })
    }

    pub fn next_query(&mut self) -> Result<Option<SourceQuery>> {
        loop {
            match &mut self.inner {
                SourceInner::Dir { root, walk } => {
                    let Some(ent) = walk.next() else {
                        return Ok(None);
                    };
                    let ent = ent.map_err(|e| {
                        Error::input(format!("source directory: cannot walk ({e})"))
                    })?;
                    if !ent.file_type().is_file() {
                        continue;
                    }
                    self.n += 1;
                    let rel = ent
                        .path()
                        .strip_prefix(&*root)
                        .unwrap_or(ent.path())
                        .to_string_lossy()
                        .into_owned();
                    return Ok(Some(SourceQuery {
                        n: self.n,
                        label: Some(rel),
                        query: Query::from_image_file(ent.path())?,
                    }));
                }
                SourceInner::Csv {
                    rdr,
                    col,
                    field,
                    name,
                    used,
                    line: last,
                } => {
                    let mut rec = csv::StringRecord::new();
                    let more = rdr.read_record(&mut rec).map_err(|e| {
                        if over_budget(used) {
                            Error::input(format!(
                                "{name}: the CSV record after line {last} is longer than {} bytes",
                                crate::input::MAX_LINE
                            ))
                        } else {
                            Error::input(format!("{name}: {}", csv_error(&e)))
                        }
                    })?;
                    if !more {
                        return Ok(None);
                    }
                    used.store(0, Ordering::Relaxed);
                    let line = rec.position().map(|p| p.line()).unwrap_or(0);
                    *last = line.max(*last);
                    self.n += 1;
                    let v = rec.get(*col).unwrap_or("").trim().to_string();
                    if v.is_empty() {
                        continue;
                    }
                    return Ok(Some(SourceQuery {
                        n: line,
                        label: None,
                        query: query_for(*field, v),
                    }));
                }
                SourceInner::Jsonl {
                    lines,
                    key,
                    field,
                    name,
                } => {
                    self.n += 1;
                    let n = self.n;
                    let mut buf = Vec::new();
                    if !crate::input::read_bounded_line(
                        lines,
                        &mut buf,
                        &format!("{name} line {n}"),
                    )? {
                        return Ok(None);
                    }
                    let line = String::from_utf8(buf)
                        .map_err(|_| Error::input(format!("{name} line {n}: not valid UTF-8")))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                        Error::input(format!(
                            "{name} line {n}: not valid JSON (column {})",
                            e.column()
                        ))
                    })?;
                    let Some(val) = record::scalar_text(v.get(key.as_str()))
                        .map_err(|why| Error::input(format!("{name} line {n}: {key:?} {why}")))?
                    else {
                        continue;
                    };
                    return Ok(Some(SourceQuery {
                        n,
                        label: None,
                        query: query_for(*field, val),
                    }));
                }
            }
        }
    }
}

/// The CSV parser's read buffer.
const CSV_BUFFER: usize = 64 << 10;

/// What the CSV parser reads through: once it has pulled more than one
/// record may hold ([`crate::input::MAX_LINE`], plus what its buffer can
/// hold of the next records) since the last whole record, reads fail. The
/// parser keeps a whole record in memory, and a quoted field may span any
/// number of lines, so this and not a line limit bounds its memory.
struct RecordBudget<R> {
    inner: R,
    used: Arc<AtomicU64>,
}

fn over_budget(used: &AtomicU64) -> bool {
    used.load(Ordering::Relaxed) > crate::input::MAX_LINE + CSV_BUFFER as u64
}

impl<R: std::io::Read> std::io::Read for RecordBudget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if over_budget(&self.used) {
            return Err(std::io::Error::other("CSV record too long"));
        }
        let n = self.inner.read(buf)?;
        self.used.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn csv_error(e: &csv::Error) -> String {
    match e.position() {
        Some(p) => format!("line {}: malformed CSV", p.line()),
        None => "malformed CSV".into(),
    }
}

/// Runs a match; hits are written to `out` as they are verified, batch by
/// batch, in source order within each batch.
/// How much of each hit `match` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Index only: the record hash proven to the signed root through the
    /// tree tiles, the record id from the encrypted index, no shard read.
    /// A blind-index collision (2^-128 per query and entry) is ruled out
    /// for record-id queries only.
    Index,
    /// Also read and re-hash each hit's record from its shard, as lookup
    /// does, and check that it carries the queried value.
    Content,
}

pub fn run(
    opened: &Opened,
    src: &Source,
    jobs: usize,
    depth: Depth,
    mut emit: impl FnMut(&Hit) -> Result<()>,
) -> Result<Summary> {
    let mut reader = SourceReader::open(src)?;
    let mut summary = Summary::default();
    let audit_key = opened.key.derive("kakuri 2026-11 audit source v1");
    let mut source_hasher = blake3::Hasher::new_keyed(&audit_key);
    let mut lk = Lookup::new(opened)?;
    loop {
        let mut batch: Vec<SourceQuery> = Vec::new();
        while batch.len() < BATCH {
            match reader.next_query()? {
                Some(q) => batch.push(q),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        // Blind, then walk the index in key order.
        let mut keyed: Vec<([u8; KEY_LEN], usize)> = batch
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let v = q.query.value();
                source_hasher.update(&[q.query.field() as u8]);
                source_hasher.update(&(v.len() as u64).to_le_bytes());
                source_hasher.update(&v);
                let h = opened.key.blind(q.query.field(), &v);
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(&h[..KEY_LEN]);
                (k, i)
            })
            .collect();
        keyed.sort_unstable();
        let mut pairs: Vec<(u64, usize)> = Vec::new();
        let mut last: Option<([u8; KEY_LEN], Vec<u64>)> = None;
        for (k, i) in keyed {
            let ords = match &last {
                Some((lk_, o)) if *lk_ == k => o.clone(),
                _ => {
                    let o = lk.candidates_by_key(&k)?;
                    last = Some((k, o.clone()));
                    o
                }
            };
            pairs.extend(ords.into_iter().map(|o| (o, i)));
        }
        pairs.sort_unstable();
        // Read the candidate records in ordinal order, split across threads.
        let mut ords: Vec<u64> = pairs.iter().map(|p| p.0).collect();
        ords.dedup();
        let per = ords.len().div_ceil(jobs.max(1)).max(1);
        // Each record is verified in full, then only what the answer needs
        // is kept (not the image), so memory stays flat however many hit.
        let fetched: Vec<Result<Vec<lookup::Found>>> = std::thread::scope(|s| {
            let hs: Vec<_> = ords
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || -> Result<Vec<lookup::Found>> {
                        let mut l = Lookup::new(opened)?;
                        chunk
                            .iter()
                            .map(|&o| match depth {
                                Depth::Index => l.index_entry(o),
                                Depth::Content => {
                                    l.fetch_batch(o).and_then(|v| lookup::Found::of(&v))
                                }
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("match thread"))
                .collect()
        });
        let mut by_ord: HashMap<u64, lookup::Found> = HashMap::with_capacity(ords.len());
        for r in fetched {
            for f in r? {
                by_ord.insert(f.ordinal, f);
            }
        }
        let mut hits: Vec<(usize, Hit)> = Vec::new();
        let mut matched = vec![false; batch.len()];
        for (o, i) in pairs {
            let v = &by_ord[&o];
            let genuine = match (depth, &batch[i].query) {
                (Depth::Content, q) => v.matches(q),
                (Depth::Index, q @ Query::RecordId(_)) => v.matches(q),
                (Depth::Index, _) => true,
            };
            if !genuine {
                continue; // a blind-index collision, ruled out
            }
            matched[i] = true;
            hits.push((
                i,
                Hit {
                    query: batch[i].n,
                    file: batch[i].label.clone(),
                    record_id: v.record_id.clone(),
                    ordinal: o,
                    shard: v.shard.clone(),
                    record_hash: hex::encode(v.record_hash),
                    verified: true,
                },
            ));
        }
        hits.sort_by_key(|(i, h)| (*i, h.ordinal));
        for (_, h) in &hits {
            emit(h)?;
        }
        summary.queries += batch.len() as u64;
        summary.queries_matched += matched.iter().filter(|m| **m).count() as u64;
        summary.records_matched += hits.len() as u64;
    }
    summary.queries_not_found = summary.queries - summary.queries_matched;
    summary.source_hash = source_hasher.finalize().to_hex().to_string();
    Ok(summary)
}

/// Writes hits as JSON lines or CSV.
pub struct HitWriter<W: Write> {
    w: W,
    csv: bool,
    header: bool,
}

impl<W: Write> HitWriter<W> {
    pub fn new(w: W, csv: bool) -> Self {
        HitWriter {
            w,
            csv,
            header: false,
        }
    }
    pub fn write(&mut self, h: &Hit) -> Result<()> {
        let io = |e| Error::io_ctx("cannot write match output", e);
        if self.csv {
            if !self.header {
                writeln!(
                    self.w,
                    "query,file,record_id,ordinal,shard,record_hash,verified"
                )
                .map_err(io)?;
                self.header = true;
            }
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            writeln!(
                self.w,
                "{},{},{},{},{},{},{}",
                h.query,
                q(h.file.as_deref().unwrap_or("")),
                q(&h.record_id),
                h.ordinal,
                h.shard,
                h.record_hash,
                h.verified
            )
            .map_err(io)
        } else {
            serde_json::to_writer(&mut self.w, h)
                .map_err(|e| Error::io_ctx("cannot write match output", e.into()))?;
            self.w.write_all(b"\n").map_err(io)
        }
    }
    pub fn finish(mut self) -> Result<W> {
        self.w
            .flush()
            .map_err(|e| Error::io_ctx("cannot write match output", e))?;
        Ok(self.w)
    }
}

/// Parses `--field`.
pub fn parse_field(s: &str) -> Result<Field> {
    match s {
        "member_id" => Ok(Field::MemberId),
        "document_number" => Ok(Field::DocumentNumber),
        "record_id" => Ok(Field::RecordId),
        _ => Err(Error::usage(format!(
            "--field must be member_id, document_number or record_id, not {s:?}"
        ))),
    }
}
