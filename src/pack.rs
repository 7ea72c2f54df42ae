//! `pack`: seal an input set into a new vault.
//!
//! One thread reads and validates the input in order and cuts it into shard
//! jobs (contiguous ordinal ranges); `jobs` workers each read, hash,
//! compress and encrypt whole shards; a collector takes finished shards in
//! order and streams the record table and Merkle tree. The signed manifest
//! is written last; on any error the half-built vault directory is removed.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use crate::crypt::{EncryptedFile, VaultKey};
use crate::custody;
use crate::error::{Error, Result};
use crate::index::{self, Entry, RecordLoc, RecordsWriter, TreeWriter};
use crate::input::{InputReader, InputRecord};
use crate::manifest::{self, FileInfo, IndexInfo, Manifest, MerkleInfo, ShardInfo};
use crate::record::{self, Field, Meta, META_FORMAT};
use crate::shard::{self, ShardWriter};
use crate::vault;

pub struct PackOptions {
    pub input: PathBuf,
    pub recipients: PathBuf,
    pub sign_key: PathBuf,
    pub retain_until: String,
    pub out: PathBuf,
    pub jobs: usize,
    pub zstd_level: i32,
    /// A shard is closed once its images reach this many bytes…
    pub shard_bytes: u64,
    /// …or this many records.
    pub shard_records: u64,
    pub max_record_bytes: u64,
    /// Custodians needed to open the vault (1: any one of them).
    pub threshold: u32,
    /// Recorded in the audit log.
    pub operator: String,
    /// Blind-index entries sorted in memory before spilling a run (24 bytes each).
    pub sort_run_entries: usize,
    /// Continue an interrupted pack into `out` (same input and options).
    pub resume: bool,
    /// Custodian identities that unwrap the vault key when resuming.
    pub identities: Vec<PathBuf>,
    pub progress: bool,
    /// Reed–Solomon parity over shards and index files (`None`: none).
    pub parity: Option<crate::parity::Params>,
}

impl PackOptions {
    pub fn new(
        input: PathBuf,
        recipients: PathBuf,
        sign_key: PathBuf,
        retain_until: String,
        out: PathBuf,
    ) -> Self {
        PackOptions {
            input,
            recipients,
            sign_key,
            retain_until,
            out,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            zstd_level: -7,
            shard_bytes: 256 << 20,
            shard_records: 8192,
            max_record_bytes: 1 << 30,
            threshold: 1,
            operator: crate::audit::default_operator(),
            sort_run_entries: 1 << 18,
            resume: false,
            identities: Vec::new(),
            progress: false,
            parity: Some(crate::parity::Params::DEFAULT),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct PackSummary {
    pub vault: String,
    pub vault_id: String,
    pub records: u64,
    pub image_bytes: u64,
    pub vault_bytes: u64,
    pub shards: usize,
    pub root: String,
    pub retain_until: String,
    pub doc_types: BTreeMap<String, u64>,
    pub seconds: f64,
}

struct ShardJob {
    shard: u32,
    first_ordinal: u64,
    records: Vec<InputRecord>,
}

struct ShardDone {
    shard: u32,
    first_ordinal: u64,
    locs: Vec<RecordLoc>,
    /// Record ids, in ordinal order.
    ids: Vec<String>,
    entries: Vec<Entry>,
    file: FileInfo,
    /// The shard's parity file, if the vault has parity.
    parity: Option<FileInfo>,
    image_bytes: u64,
    doc_types: HashMap<String, u64>,
}

fn random_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn pack(opts: &PackOptions) -> Result<PackSummary> {
    let started = Instant::now();
    let retain = manifest::parse_date(&opts.retain_until)?;
    if retain <= time::OffsetDateTime::now_utc().date() {
        return Err(Error::usage(format!(
            "--retain-until {} is not in the future",
            opts.retain_until
        )));
    }
    let recipients = if opts.resume {
        Vec::new()
    } else {
        custody::parse_recipients(&opts.recipients)?
    };
    if !opts.resume && (opts.threshold == 0 || opts.threshold as usize > recipients.len()) {
        return Err(Error::usage(format!(
            "--threshold {} needs between 1 and {} custodians ({} lists {})",
            opts.threshold,
            recipients.len(),
            opts.recipients.display(),
            recipients.len()
        )));
    }
    let sign_key = crate::keys::load_signing_key(&opts.sign_key)?;
    let mut input = InputReader::open(&opts.input)?;
    if let (Ok(i), Some(Ok(o))) = (
        opts.input.canonicalize(),
        opts.out
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(Path::canonicalize),
    ) {
        if o.starts_with(&i) {
            return Err(Error::usage("--out must not be inside the input directory"));
        }
    }
    let root = opts.out.as_path();
    let input_canon = input.root().display().to_string();
    let (key, journal, mut cleanup) = if opts.resume {
        let jp = root.join(PACK_JOURNAL);
        if root.join(vault::MANIFEST).exists() {
            let had = root.join(PACK_JOURNAL).exists();
            remove_leftovers(root);
            return Err(Error::state(format!(
                "{}: the vault is complete; nothing to resume{}",
                opts.out.display(),
                if had {
                    " (the interrupted pack's leftover files were removed)"
                } else {
                    ""
                }
            )));
        }
        let jb = fs::read(&jp).map_err(|_| {
            Error::state(format!(
                "{}: no {PACK_JOURNAL} to resume from (not an interrupted pack)",
                opts.out.display()
            ))
        })?;
        let j: PackJournal = serde_json::from_slice(&jb)
            .map_err(|_| Error::integrity(format!("{PACK_JOURNAL}: damaged")))?;
        let differs = [
            ("input directory", j.input != input_canon),
            (
                "--parity",
                j.parity != opts.parity.map(crate::parity::ParityInfo::new),
            ),
            ("--retain-until", j.retain_until != opts.retain_until),
            ("--zstd-level", j.zstd_level != opts.zstd_level),
            ("--shard-bytes", j.shard_bytes != opts.shard_bytes),
            ("--shard-records", j.shard_records != opts.shard_records),
            (
                "--max-record-bytes",
                j.max_record_bytes != opts.max_record_bytes,
            ),
        ];
        if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(Error::refused(format!(
                "--resume: {what} differs from the interrupted pack; resume with the same input and options"
            )));
        }
        let ids = crate::keys::load_identities(&opts.identities)?;
        let key = custody::unwrap(root, &j.custody, &j.vault_id, &ids)?;
        // Index files and the signature are rebuilt; spilled sort runs of
        // the last attempt go.
        for rel in [
            vault::KEYS_FILE,
            vault::RECORDS_FILE,
            vault::TREE_FILE,
            vault::IDS_FILE,
        ] {
            let _ = fs::remove_file(root.join(rel));
            let _ = fs::remove_file(root.join(crate::parity::parity_path(rel)));
        }
        for rel in [vault::MANIFEST_SIG, vault::ALLOWED_SIGNERS] {
            let _ = fs::remove_file(root.join(rel));
        }
        if let Ok(rd) = fs::read_dir(root.join(vault::INDEX_DIR)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".sort-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // A resumed pack never deletes the operator's partial vault.
        (
            key,
            j,
            vault::RemoveOnDrop {
                dir: &opts.out,
                armed: false,
            },
        )
    } else {
        if opts.out.symlink_metadata().is_ok() {
            return Err(Error::refused(format!(
                "{} already exists; pack writes a new vault directory (or pass --resume to continue an interrupted pack)",
                opts.out.display()
            )));
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&opts.out)
            .map_err(|e| Error::io(&opts.out, "cannot create vault directory", e))?;
        let cleanup = vault::RemoveOnDrop {
            dir: &opts.out,
            armed: true,
        };
        for d in [vault::CUSTODY_DIR, vault::SHARDS_DIR, vault::INDEX_DIR] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(root.join(d))
                .map_err(|e| Error::io(&root.join(d), "cannot create", e))?;
        }
        let key = VaultKey::generate();
        let vault_id = random_id();
        let wrapped = custody::wrap(root, &key, &vault_id, &recipients, opts.threshold, 1)?;
        let j = PackJournal {
            vault_id,
            created: vault::now_rfc3339(),
            mtime: time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64,
            input: input_canon,
            retain_until: opts.retain_until.clone(),
            threshold: opts.threshold,
            zstd_level: opts.zstd_level,
            shard_bytes: opts.shard_bytes,
            shard_records: opts.shard_records,
            max_record_bytes: opts.max_record_bytes,
            custody: wrapped.info,
            custody_files: wrapped.files,
            parity: opts.parity.map(crate::parity::ParityInfo::new),
        };
        vault::write_atomic(
            &root.join(PACK_JOURNAL),
            &serde_json::to_vec_pretty(&j).expect("journal serializes"),
            0o600,
        )?;
        (key, j, cleanup)
    };
    if journal.parity.is_some() {
        for d in [
            crate::parity::DIR.to_string(),
            format!("{}/{}", crate::parity::DIR, vault::SHARDS_DIR),
            format!("{}/{}", crate::parity::DIR, vault::INDEX_DIR),
        ] {
            let p = root.join(&d);
            if !p.is_dir() {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&p)
                    .map_err(|e| Error::io(&p, "cannot create", e))?;
            }
        }
    }
    let vault_id = journal.vault_id.clone();
    let created = journal.created.clone();
    let mtime = journal.mtime;
    let threshold = journal.threshold;

    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} packing {pos} records, {msg} [{elapsed_precise}]",
            )
            .expect("valid template"),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(b)
    } else {
        None
    };

    let failed = AtomicBool::new(false);
    let jobs = opts.jobs.max(1);
    // A rendezvous channel: at most one shard's worth of record metadata
    // waits besides those being sealed, so memory stays flat.
    let (job_tx, job_rx) = mpsc::sync_channel::<ShardJob>(0);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Result<ShardDone>>();

    let records_file = EncryptedFile::create(root, vault::RECORDS_FILE, &key)?;
    let tree_file = EncryptedFile::create(root, vault::TREE_FILE, &key)?;
    let ids_file = EncryptedFile::create(root, vault::IDS_FILE, &key)?;

    // Image files are opened beneath this descriptor by every worker.
    let input_dir = crate::input::InputDir::open(input.root()).map_err(|e| {
        Error::input(format!(
            "input directory cannot be opened ({})",
            crate::error::io_reason(&e)
        ))
    })?;
    let input_dir = &input_dir;
    let outcome: Result<(CollectorOut<'_>, u64)> = std::thread::scope(|s| {
        for _ in 0..jobs {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let key = &key;
            let failed = &failed;
            let bar = bar.clone();
            s.spawn(move || loop {
                let job = {
                    let rx = job_rx.lock().expect("job queue");
                    rx.recv()
                };
                let Ok(job) = job else { break };
                if failed.load(Ordering::Relaxed) {
                    continue;
                }
                let r = seal_shard(root, input_dir, key, job, opts, mtime, bar.as_ref())
                    .and_then(|d| write_done(root, key, &d).map(|_| d));
                crate::faults::point("pack-shard-sealed");
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if done_tx.send(r).is_err() {
                    break;
                }
            });
        }
        let resumed_tx = done_tx.clone();
        drop(done_tx);
        let sorter =
            index::EntrySorter::new(&root.join(vault::INDEX_DIR), &key, opts.sort_run_entries);
        let collector =
            s.spawn(move || collect(done_rx, records_file, tree_file, ids_file, sorter));

        // A shard sealed before an interruption is taken as it is;
        // anything else goes to the workers.
        let dispatch_job = |job: ShardJob| -> Result<()> {
            if opts.resume {
                let n = job.records.len() as u64;
                if let Some(d) = load_done(
                    root,
                    &key,
                    job.shard,
                    job.first_ordinal,
                    n,
                    opts.parity.is_some(),
                ) {
                    if let Some(b) = &bar {
                        b.inc(n);
                    }
                    let _ = resumed_tx.send(Ok(d));
                    return Ok(());
                }
                clear_shard(root, job.shard)?;
            }
            let _ = job_tx.send(job);
            Ok(())
        };
        // Dispatch: cut the input into shards of contiguous ordinals.
        let dispatch = (|| -> Result<u64> {
            let mut shard = 0u32;
            let mut cur = ShardJob {
                shard,
                first_ordinal: 0,
                records: Vec::new(),
            };
            let mut cur_bytes = 0u64;
            let mut total = 0u64;
            while let Some(r) = input.next_record()? {
                if failed.load(Ordering::Relaxed) {
                    return Ok(total);
                }
                if r.image_size > opts.max_record_bytes {
                    return Err(Error::input(format!(
                        "{}: image is larger than the limit of {} bytes (--max-record-bytes)",
                        r.place, opts.max_record_bytes
                    )));
                }
                cur_bytes += r.image_size;
                cur.records.push(r);
                total += 1;
                if cur_bytes >= opts.shard_bytes || cur.records.len() as u64 >= opts.shard_records {
                    let next = ShardJob {
                        shard: shard + 1,
                        first_ordinal: total,
                        records: Vec::new(),
                    };
                    dispatch_job(std::mem::replace(&mut cur, next))?;
                    shard += 1;
                    cur_bytes = 0;
                }
            }
            if !cur.records.is_empty() {
                dispatch_job(cur)?;
            }
            Ok(total)
        })();
        if dispatch.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        drop(job_tx);
        drop(resumed_tx);
        let collected = collector.join().expect("collector thread");
        let total = dispatch?;
        let c = collected?;
        Ok((c, total))
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (c, total) = outcome?;
    if total == 0 {
        return Err(Error::input(format!(
            "{}: the input holds no records",
            opts.input.display()
        )));
    }
    if c.records != total {
        return Err(Error::internal(
            "sealed record count differs from input count",
        ));
    }

    // Index files.
    let CollectorOut {
        records,
        image_bytes,
        entries,
        doc_types,
        shards,
        shard_files,
        mut parity_files,
        records_w,
        tree_w,
        ids_w,
    } = c;
    let records_info = records_w
        .finish()
        .map_err(|e| Error::io_ctx("cannot write index/records.age", e))?
        .finish()?;
    let (tree_w, root_hash) = tree_w.finish()?;
    let tree_info = tree_w.finish()?;
    let ids_info = ids_w
        .finish()
        .map_err(|e| Error::io_ctx("cannot write index/ids.age", e))?
        .finish()?;
    crate::faults::point("pack-before-keys");
    let mut keys_file = EncryptedFile::create(root, vault::KEYS_FILE, &key)?;
    let entry_count = index::write_keys(&mut keys_file, entries.finish()?)?;
    let keys_info = keys_file.finish()?;
    let index_files = [keys_info, records_info, tree_info, ids_info];
    if let Some(p) = opts.parity {
        // Index files are read back once (a few percent of the vault).
        for f in &index_files {
            parity_files.push(crate::parity::build_from_file(root, f, p, None)?);
        }
    }

    let mut files = journal.custody_files.clone();
    files.extend(shard_files);
    files.extend(index_files);
    files.extend(parity_files);
    let vault_bytes: u64 = files.iter().map(|f| f.size).sum();

    let m = Manifest {
        format: manifest::FORMAT.into(),
        version: manifest::VERSION,
        vault_id: vault_id.clone(),
        created,
        retain_until: opts.retain_until.clone(),
        tool: format!("kakuri {}", env!("CARGO_PKG_VERSION")),
        records,
        image_bytes,
        doc_types: doc_types.clone(),
        merkle: MerkleInfo {
            alg: "blake3-rfc6962".into(),
            size: records,
            root: hex::encode(root_hash),
        },
        index: IndexInfo {
            keys: vault::KEYS_FILE.into(),
            records: vault::RECORDS_FILE.into(),
            tree: vault::TREE_FILE.into(),
            ids: vault::IDS_FILE.into(),
            entries: entry_count,
            page: index::PAGE as u32,
            tree_tile: crate::merkle::TILE as u32,
        },
        custody: journal.custody.clone(),
        signer: sign_key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::internal(format!("public key encoding: {e}")))?,
        zstd_level: opts.zstd_level,
        shards: shards.clone(),
        files,
        parity: journal.parity.clone(),
        supersedes: None,
    };
    // The pack entry goes first: a vault is complete only with its
    // manifest, and a complete vault always has its pack entry.
    crate::audit::append(
        root,
        &vault_id,
        &sign_key,
        crate::audit::Event {
            action: "pack",
            operator: &opts.operator,
            case: None,
            reason: None,
            result: serde_json::json!({
                "records": records,
                "image_bytes": image_bytes,
                "shards": shards.len(),
                "root": hex::encode(root_hash),
                "threshold": threshold,
                "resumed": opts.resume,
                "retain_until": opts.retain_until,
            }),
            queries: Vec::new(),
        },
    )?;
    crate::faults::point("pack-before-manifest");
    manifest::write_signed(root, &m, &sign_key)?;
    // Complete now: the per-shard records and the journal go (a crash here
    // leaves them; `verify` reports them and `pack --resume` removes them).
    remove_leftovers(root);
    vault::fsync_dir(root)?;
    cleanup.armed = false;
    Ok(PackSummary {
        vault: opts.out.display().to_string(),
        vault_id,
        records,
        image_bytes,
        vault_bytes,
        shards: shards.len(),
        root: hex::encode(root_hash),
        retain_until: opts.retain_until.clone(),
        doc_types,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The doc_type as counted in the clear manifest: only short tokens
/// (`[a-z0-9_-]`, at most 32 bytes) are shown; anything else — which could
/// be free text about a person — is counted as "other".
pub fn doc_type_label(t: Option<&str>) -> String {
    match t {
        None => "unspecified".into(),
        Some(s)
            if !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }) =>
        {
            s.into()
        }
        Some(_) => "other".into(),
    }
}

/// The sealed metadata document of one record.
pub fn meta_json(r: &InputRecord, image_size: u64, image_hash: &[u8; 32]) -> Vec<u8> {
    let m = Meta {
        format: META_FORMAT.into(),
        ordinal: r.ordinal,
        record_id: r.record_id.clone(),
        image_path: r.image_rel.clone(),
        image_size,
        image_blake3: hex::encode(image_hash),
        source: &r.source,
    };
    serde_json::to_vec(&m).expect("meta serializes")
}

/// Blind-index entries of one record.
pub fn blind_entries(
    key: &VaultKey,
    ordinal: u64,
    record_id: &str,
    fields: &record::Fields,
    image_hash: &[u8; 32],
) -> Vec<Entry> {
    let mut v = Vec::with_capacity(4);
    let mut push = |f: Field, val: &[u8]| {
        let h = key.blind(f, val);
        let mut k = [0u8; index::KEY_LEN];
        k.copy_from_slice(&h[..index::KEY_LEN]);
        v.push(Entry { key: k, ordinal });
    };
    push(Field::RecordId, record_id.as_bytes());
    if let Some(m) = &fields.member_id {
        push(Field::MemberId, m.as_bytes());
    }
    if let Some(d) = &fields.document_number {
        push(Field::DocumentNumber, d.as_bytes());
    }
    push(Field::ImageHash, image_hash);
    v
}

/// Image files a worker's opener thread may be ahead of it (each an open
/// descriptor; bounded again by the worker count, see [`seal_shard`]).
const READ_AHEAD_FILES: usize = 64;

/// Seals one shard. A second thread opens the job's image files in order,
/// asks the kernel to read each one ahead (`posix_fadvise(WILLNEED)`) and
/// hands the open files to the worker, at most [`READ_AHEAD_FILES`] ahead:
/// reading many small files from a cold disk then overlaps instead of
/// waiting file by file. Image bytes never pass through that thread.
fn seal_shard(
    root: &Path,
    dir: &crate::input::InputDir,
    key: &VaultKey,
    job: ShardJob,
    opts: &PackOptions,
    mtime: u64,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<ShardDone> {
    // Open descriptors in flight stay well below the usual limit of 1,024;
    // files go over in batches, so the threads rarely wake each other.
    let depth = READ_AHEAD_FILES.min(512 / opts.jobs.max(1)).max(1);
    let batch = (depth / 4).max(1);
    let (tx, rx) = mpsc::sync_channel::<Vec<std::io::Result<fs::File>>>(depth / batch);
    std::thread::scope(|s| {
        let records = &job.records;
        s.spawn(move || {
            for chunk in records.chunks(batch) {
                let mut files = Vec::with_capacity(chunk.len());
                for r in chunk {
                    // No following a symlink swapped in after the input was
                    // checked, and no blocking on a FIFO: the worker refuses
                    // anything but a regular file.
                    let f = dir.open_image(&r.image_rel);
                    if let Ok(f) = &f {
                        crate::crypt::advise(f, 0, 0, libc::POSIX_FADV_WILLNEED);
                    }
                    files.push(f);
                }
                if tx.send(files).is_err() {
                    return; // the worker stopped
                }
            }
        });
        let r = seal_records(root, key, &job, opts, mtime, bar, &rx);
        drop(rx);
        r
    })
}

#[allow(clippy::too_many_arguments)]
fn seal_records(
    root: &Path,
    key: &VaultKey,
    job: &ShardJob,
    opts: &PackOptions,
    mtime: u64,
    bar: Option<&indicatif::ProgressBar>,
    opened: &mpsc::Receiver<Vec<std::io::Result<fs::File>>>,
) -> Result<ShardDone> {
    let mut w = ShardWriter::create(root, job.shard, key, opts.zstd_level, mtime, opts.parity)?;
    let mut locs = Vec::with_capacity(job.records.len());
    let mut ids = Vec::with_capacity(job.records.len());
    let mut entries = Vec::with_capacity(job.records.len() * 4);
    let mut image_bytes = 0u64;
    let mut doc_types: HashMap<String, u64> = HashMap::new();
    let mut image = Vec::new();
    let mut files = Vec::new().into_iter();
    for r in &job.records {
        image.clear();
        let f = match files.next() {
            Some(f) => f,
            None => {
                files = opened
                    .recv()
                    .map_err(|_| Error::internal("the image opener stopped early"))?
                    .into_iter();
                files
                    .next()
                    .ok_or_else(|| Error::internal("the image opener sent an empty batch"))?
            }
        };
        let mut f = f.map_err(|e| {
            if crate::input::is_escape(&e) {
                Error::input(format!(
                    "{}: image path now goes through a symbolic link or out of the input directory (changed while packing); symlinks are refused",
                    r.place
                ))
            } else {
                Error::input(format!(
                    "{}: image file cannot be read ({})",
                    r.place,
                    crate::error::io_reason(&e)
                ))
            }
        })?;
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Err(Error::input(format!(
                "{}: image file changed into something other than a regular file while packing",
                r.place
            )));
        }
        Read::by_ref(&mut f)
            .take(opts.max_record_bytes + 1)
            .read_to_end(&mut image)
            .map_err(|e| {
                Error::input(format!(
                    "{}: image file cannot be read ({})",
                    r.place,
                    crate::error::io_reason(&e)
                ))
            })?;
        if image.len() as u64 > opts.max_record_bytes {
            return Err(Error::input(format!(
                "{}: image grew beyond the size limit while packing",
                r.place
            )));
        }
        let image_hash = *blake3::hash(&image).as_bytes();
        let meta = meta_json(r, image.len() as u64, &image_hash);
        let record_hash = record::record_hash(&meta);
        let ext = shard::image_ext(&r.image_rel);
        let (frame_offset, frame_len, plain_len) =
            w.add(r.ordinal, &meta, &image, ext.as_deref())?;
        locs.push(RecordLoc {
            shard: job.shard,
            frame_offset,
            frame_len,
            plain_len,
            record_hash,
            // The collector places the id in ids.age.
            id_offset: 0,
            id_len: u32::try_from(r.record_id.len())
                .map_err(|_| Error::input(format!("{}: record_id is too long", r.place)))?,
        });
        ids.push(r.record_id.clone());
        entries.extend(blind_entries(
            key,
            r.ordinal,
            &r.record_id,
            &r.fields,
            &image_hash,
        ));
        image_bytes += image.len() as u64;
        *doc_types
            .entry(doc_type_label(r.fields.doc_type.as_deref()))
            .or_default() += 1;
        if let Some(b) = bar {
            b.inc(1);
        }
    }
    let (file, parity) = w.finish()?;
    Ok(ShardDone {
        shard: job.shard,
        first_ordinal: job.first_ordinal,
        locs,
        ids,
        entries,
        file,
        parity,
        image_bytes,
        doc_types,
    })
}

struct CollectorOut<'a> {
    records: u64,
    image_bytes: u64,
    entries: index::EntrySorter<'a>,
    doc_types: BTreeMap<String, u64>,
    shards: Vec<ShardInfo>,
    shard_files: Vec<FileInfo>,
    parity_files: Vec<FileInfo>,
    records_w: RecordsWriter<EncryptedFile>,
    tree_w: TreeWriter<EncryptedFile>,
    ids_w: index::IdsWriter<EncryptedFile>,
}

/// Takes finished shards in shard order and streams the record table and
/// the tree's leaf level; only the blind-index entries stay in memory.
fn collect<'a>(
    rx: mpsc::Receiver<Result<ShardDone>>,
    records_file: EncryptedFile,
    tree_file: EncryptedFile,
    ids_file: EncryptedFile,
    sorter: index::EntrySorter<'a>,
) -> Result<CollectorOut<'a>> {
    let io = |e| Error::io_ctx("cannot write the index", e);
    let mut pending: BTreeMap<u32, ShardDone> = BTreeMap::new();
    let mut next = 0u32;
    let mut out = CollectorOut {
        records: 0,
        image_bytes: 0,
        entries: sorter,
        doc_types: BTreeMap::new(),
        shards: Vec::new(),
        shard_files: Vec::new(),
        parity_files: Vec::new(),
        records_w: RecordsWriter::new(records_file).map_err(io)?,
        tree_w: TreeWriter::new(tree_file).map_err(io)?,
        ids_w: index::IdsWriter::new(ids_file).map_err(io)?,
    };
    let mut first_err = None;
    for r in rx {
        match r {
            Ok(d) => {
                pending.insert(d.shard, d);
            }
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        }
        if first_err.is_some() {
            continue;
        }
        while let Some(d) = pending.remove(&next) {
            if d.first_ordinal != out.records {
                return Err(Error::internal("shard ordinals are not contiguous"));
            }
            if d.ids.len() != d.locs.len() {
                return Err(Error::internal("a shard's ids and slots differ in number"));
            }
            for (l, id) in d.locs.iter().zip(&d.ids) {
                let mut l = *l;
                l.id_offset = out.ids_w.push(id.as_bytes()).map_err(io)?;
                let l = &l;
                out.records_w.push(l).map_err(io)?;
                out.tree_w.push(&l.record_hash).map_err(io)?;
            }
            out.records += d.locs.len() as u64;
            out.image_bytes += d.image_bytes;
            for e in d.entries {
                out.entries.push(e)?;
            }
            for (k, v) in d.doc_types {
                *out.doc_types.entry(k).or_default() += v;
            }
            out.shards.push(ShardInfo {
                file: d.file.path.clone(),
                first_ordinal: d.first_ordinal,
                records: d.locs.len() as u64,
            });
            out.shard_files.push(d.file);
            out.parity_files.extend(d.parity);
            next += 1;
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if !pending.is_empty() {
        return Err(Error::internal("a shard is missing from the sequence"));
    }
    Ok(out)
}

/// `VAULT/pack.json`: what an interrupted pack needs to continue. Public
/// information only (the vault key stays wrapped for the custodians).
pub const PACK_JOURNAL: &str = "pack.json";

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct PackJournal {
    vault_id: String,
    created: String,
    mtime: u64,
    input: String,
    retain_until: String,
    threshold: u32,
    zstd_level: i32,
    shard_bytes: u64,
    shard_records: u64,
    max_record_bytes: u64,
    custody: custody::CustodyInfo,
    custody_files: Vec<FileInfo>,
    #[serde(default)]
    parity: Option<crate::parity::ParityInfo>,
}

fn done_path(shard: u32) -> String {
    format!("{}/.done-{shard:06}.age", vault::INDEX_DIR)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DoneHeader {
    shard: u32,
    first_ordinal: u64,
    records: u64,
    entries: u64,
    image_bytes: u64,
    doc_types: HashMap<String, u64>,
    file: FileInfo,
    #[serde(default)]
    parity: Option<FileInfo>,
}

/// Records a sealed shard (its index slots and blind entries, encrypted to
/// the vault key) so that a resumed pack need not seal it again.
fn write_done(root: &Path, key: &VaultKey, d: &ShardDone) -> Result<()> {
    use std::io::Write;
    let rel = done_path(d.shard);
    let mut f = EncryptedFile::create(root, &rel, key)?;
    let h = serde_json::to_vec(&DoneHeader {
        shard: d.shard,
        first_ordinal: d.first_ordinal,
        records: d.locs.len() as u64,
        entries: d.entries.len() as u64,
        image_bytes: d.image_bytes,
        doc_types: d.doc_types.clone(),
        file: d.file.clone(),
        parity: d.parity.clone(),
    })
    .expect("header serializes");
    let io = |e| Error::io_ctx(format!("cannot write {rel}"), e);
    f.write_all(&(h.len() as u32).to_le_bytes()).map_err(io)?;
    f.write_all(&h).map_err(io)?;
    for l in &d.locs {
        f.write_all(&l.encode()).map_err(io)?;
    }
    let mut b = [0u8; index::ENTRY_LEN];
    for e in &d.entries {
        e.encode(&mut b);
        f.write_all(&b).map_err(io)?;
    }
    for id in &d.ids {
        f.write_all(&(id.len() as u32).to_le_bytes()).map_err(io)?;
        f.write_all(id.as_bytes()).map_err(io)?;
    }
    f.finish().map(|_| ())
}

/// A shard sealed before an interruption, if its record and its shard file
/// are whole and it covers exactly the records the input now puts there.
fn load_done(
    root: &Path,
    key: &VaultKey,
    shard: u32,
    first_ordinal: u64,
    records: u64,
    parity: bool,
) -> Option<ShardDone> {
    use std::io::Read;
    let rel = done_path(shard);
    let mut r = crate::crypt::open_encrypted(&root.join(&rel), &rel, key).ok()?;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let mut h = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut h).ok()?;
    let h: DoneHeader = serde_json::from_slice(&h).ok()?;
    if h.shard != shard || h.first_ordinal != first_ordinal || h.records != records {
        return None;
    }
    let md = fs::metadata(root.join(&h.file.path)).ok()?;
    if md.len() != h.file.size {
        return None;
    }
    // A shard sealed with parity is taken only with its parity file.
    match (&h.parity, parity) {
        (Some(p), true) => {
            if fs::metadata(root.join(&p.path)).ok()?.len() != p.size {
                return None;
            }
        }
        (None, false) => {}
        _ => return None,
    }
    let mut locs = Vec::with_capacity(h.records as usize);
    let mut b = [0u8; index::RECORD_SLOT];
    for _ in 0..h.records {
        r.read_exact(&mut b).ok()?;
        locs.push(RecordLoc::decode(&b));
    }
    let mut entries = Vec::with_capacity(h.entries as usize);
    let mut e = [0u8; index::ENTRY_LEN];
    for _ in 0..h.entries {
        r.read_exact(&mut e).ok()?;
        entries.push(Entry::decode(&e));
    }
    let mut ids = Vec::with_capacity(h.records as usize);
    for l in &locs {
        let mut n = [0u8; 4];
        r.read_exact(&mut n).ok()?;
        let n = u32::from_le_bytes(n);
        if n != l.id_len {
            return None;
        }
        let mut b = vec![0u8; n as usize];
        r.read_exact(&mut b).ok()?;
        ids.push(String::from_utf8(b).ok()?);
    }
    Some(ShardDone {
        shard,
        first_ordinal,
        locs,
        ids,
        entries,
        file: h.file,
        parity: h.parity,
        image_bytes: h.image_bytes,
        doc_types: h.doc_types,
    })
}

/// Removes the per-shard records and the journal of a finished pack.
fn remove_leftovers(root: &Path) {
    if let Ok(rd) = fs::read_dir(root.join(vault::INDEX_DIR)) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".done-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let _ = fs::remove_file(root.join(PACK_JOURNAL));
}

/// Clears what an interrupted pack left half-done before resuming: the
/// unsealed shard `shard`'s file and record, if any.
fn clear_shard(root: &Path, shard: u32) -> Result<()> {
    let sp = vault::shard_path(shard);
    for rel in [crate::parity::parity_path(&sp), sp, done_path(shard)] {
        let p = root.join(&rel);
        if p.symlink_metadata().is_ok() {
            fs::remove_file(&p).map_err(|e| Error::io(&p, "cannot remove", e))?;
        }
    }
    Ok(())
}
