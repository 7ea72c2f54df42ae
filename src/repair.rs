//! Locating and repairing damage with the parity files, without any key.
//!
//! [`diagnose`] names the damaged 64 KiB blocks of a file whose BLAKE3
//! differs from the signed manifest, and says whether its parity can
//! rebuild them. [`repair_vault`] rebuilds them (`verify --repair`): each
//! repaired file is written under a temporary name and moved into place
//! only if its BLAKE3 equals the manifest's, so a repair never makes a
//! file worse; a parity file is rebuilt from its (intact) data file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{FileInfo, Manifest};
use crate::parity::{self, Layout, Params, Table, BLOCK};
use crate::vault::{AtomicFile, HashingWriter};

/// What parity says about a damaged file.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Damaged 64 KiB blocks, as inclusive ranges of block numbers.
    pub blocks: Vec<(u64, u64)>,
    /// The same as byte ranges `[start, end)` of the file.
    pub bytes: Vec<(u64, u64)>,
    /// Bytes beyond the size in the manifest (removed by a repair).
    pub extra_bytes: u64,
    /// Whether `verify --repair` can rebuild it.
    pub repairable: bool,
    /// One line for people.
    pub summary: String,
}

fn ranges(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((_, e)) if *e + 1 == b => *e = b,
            _ => out.push((b, b)),
        }
    }
    out
}

/// Human form of block ranges: `3`, `3-5, 9`.
pub fn ranges_text(r: &[(u64, u64)]) -> String {
    r.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads up to `buf.len()` bytes at `off`; returns how many were there.
fn read_upto(f: &mut File, off: u64, buf: &mut [u8]) -> io::Result<usize> {
    f.seek(SeekFrom::Start(off))?;
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The data blocks of `data` whose bytes differ from the table (missing
/// bytes count as damage), and how many bytes lie beyond its size.
fn damaged_blocks(path: &Path, t: &Table) -> (Vec<u64>, u64) {
    let l = t.layout;
    let Ok(mut f) = File::open(path) else {
        return ((0..l.n).collect(), 0);
    };
    let actual = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; BLOCK];
    let mut bad = Vec::new();
    for i in 0..l.n {
        let want = l.block_len(i);
        let ok = match read_upto(&mut f, i * BLOCK as u64, &mut buf[..want]) {
            Ok(n) if n == want => {
                crate::merkle::ct_eq(blake3::hash(&buf[..want]).as_bytes(), &t.data[i as usize])
            }
            _ => false,
        };
        if !ok {
            bad.push(i);
        }
    }
    (bad, actual.saturating_sub(l.size))
}

/// Intact recovery blocks of group `g`, read from the parity file.
fn intact_recovery(par: Option<&mut File>, t: &Table, g: u64) -> Vec<(usize, Vec<u8>)> {
    let Some(f) = par else { return Vec::new() };
    let r = t.layout.p.r;
    let mut out = Vec::new();
    for j in 0..r {
        let mut b = vec![0u8; BLOCK];
        if matches!(read_upto(f, t.layout.recovery_offset(g, j), &mut b), Ok(n) if n == BLOCK)
            && crate::merkle::ct_eq(
                blake3::hash(&b).as_bytes(),
                &t.recovery[(g as usize) * r + j],
            )
        {
            out.push((j, b));
        }
    }
    out
}

/// Per damaged group: (damaged data blocks, intact recovery blocks).
fn group_budget(t: &Table, bad: &[u64], par_path: &Path) -> BTreeMap<u64, (usize, usize)> {
    let k = t.layout.p.k as u64;
    let mut groups: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for &b in bad {
        groups.entry(b / k).or_default().0 += 1;
    }
    let mut pf = File::open(par_path).ok();
    for (g, v) in groups.iter_mut() {
        v.1 = intact_recovery(pf.as_mut(), t, *g).len();
    }
    groups
}

/// Locates the damage in `data` (whose BLAKE3 differs from the manifest)
/// with its parity file `par`.
pub fn diagnose(root: &Path, data: &FileInfo, par: &FileInfo, p: Params) -> Damage {
    let par_path = root.join(&par.path);
    let Some(t) = parity::read_table(&par_path, data, p) else {
        return Damage {
            blocks: Vec::new(),
            bytes: Vec::new(),
            extra_bytes: 0,
            repairable: false,
            summary: format!(
                "cannot be located: both block tables of {} are damaged too; restore from a copy",
                par.path
            ),
        };
    };
    let (bad, extra) = damaged_blocks(&root.join(&data.path), &t);
    let groups = group_budget(&t, &bad, &par_path);
    let short: Vec<u64> = groups
        .iter()
        .filter(|(_, (d, i))| d > i)
        .map(|(g, _)| *g)
        .collect();
    let l = t.layout;
    let br = ranges(&bad);
    let bytes = br
        .iter()
        .map(|(a, b)| (a * BLOCK as u64, ((b + 1) * BLOCK as u64).min(l.size)))
        .collect();
    let mut summary = if bad.is_empty() {
        String::new()
    } else {
        format!(
            "{} damaged block(s) of 64 KiB: {}",
            bad.len(),
            ranges_text(&br)
        )
    };
    if extra > 0 {
        if !summary.is_empty() {
            summary.push_str("; ");
        }
        summary.push_str(&format!("{extra} byte(s) beyond its recorded size"));
    }
    let repairable = short.is_empty();
    if repairable {
        summary.push_str("; repairable from parity (`kakuri verify --repair`)");
    } else {
        summary.push_str(&format!(
            "; NOT repairable from parity: group(s) {} have more damaged blocks than intact recovery blocks ({} per {} blocks); restore from a copy",
            short.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            p.r,
            p.k
        ));
    }
    Damage {
        blocks: br,
        bytes,
        extra_bytes: extra,
        repairable,
        summary,
    }
}

/// What a repair of one file did.
#[derive(Serialize, Debug, Clone)]
pub struct Repaired {
    pub path: String,
    /// Data blocks rebuilt from parity (inclusive ranges).
    pub blocks: Vec<(u64, u64)>,
    pub extra_bytes_removed: u64,
    /// The parity file was rebuilt from the data file.
    pub parity_rebuilt: bool,
}

fn file_ok(path: &Path, f: &FileInfo) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let mut h = blake3::Hasher::new();
    if h.update_reader(&mut file).is_err() {
        return false;
    }
    h.count() == f.size && crate::merkle::ct_eq_hex(h.finalize().to_hex().as_str(), &f.blake3)
}

/// Repairs data file `data` from `par` (and then `par` from `data`).
/// Nothing is replaced unless the result hashes to the manifest's value.
pub fn repair_file(root: &Path, data: &FileInfo, par: &FileInfo, p: Params) -> Result<Repaired> {
    let data_path = root.join(&data.path);
    let par_path = root.join(&par.path);
    let mut out = Repaired {
        path: data.path.clone(),
        blocks: Vec::new(),
        extra_bytes_removed: 0,
        parity_rebuilt: false,
    };
    if !file_ok(&data_path, data) {
        let t = parity::read_table(&par_path, data, p).ok_or_else(|| {
            Error::integrity(format!(
                "{}: damage cannot be located: both block tables of {} are damaged too; restore from a copy",
                data.path, par.path
            ))
        })?;
        let (bad, extra) = damaged_blocks(&data_path, &t);
        let budget = group_budget(&t, &bad, &par_path);
        if let Some((g, (d, i))) = budget.iter().find(|(_, (d, i))| d > i) {
            return Err(Error::integrity(format!(
                "{}: not repairable: group {g} has {d} damaged block(s) and {i} intact recovery block(s); restore from a copy",
                data.path
            )));
        }
        rebuild_data(root, data, &t, &bad)?;
        out.blocks = ranges(&bad);
        out.extra_bytes_removed = extra;
    }
    if !file_ok(&par_path, par) {
        parity::build_from_file(root, data, p, Some(par))?;
        out.parity_rebuilt = true;
    }
    Ok(out)
}

/// Writes `data` anew: intact blocks copied, damaged ones decoded.
fn rebuild_data(root: &Path, data: &FileInfo, t: &Table, bad: &[u64]) -> Result<()> {
    let l: Layout = t.layout;
    let (k, r) = (l.p.k, l.p.r);
    let data_path = root.join(&data.path);
    let mut old = File::open(&data_path).ok();
    let mut pf = File::open(root.join(parity::parity_path(&data.path))).ok();
    let staged = AtomicFile::replacing(&data_path, 0o444)?;
    let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, staged));
    let io_err = |e| Error::io(&data_path, "cannot write", e);
    let read_err = |e| Error::io(&data_path, "cannot read", e);
    let mut buf = vec![0u8; BLOCK];
    for g in 0..l.groups {
        let first = g * k as u64;
        let last = (first + k as u64).min(l.n);
        let damaged: Vec<u64> = bad
            .iter()
            .copied()
            .filter(|b| (first..last).contains(b))
            .collect();
        if damaged.is_empty() {
            for i in first..last {
                let want = l.block_len(i);
                let f = old
                    .as_mut()
                    .ok_or_else(|| Error::internal("data file vanished"))?;
                if read_upto(f, i * BLOCK as u64, &mut buf[..want]).map_err(read_err)? != want {
                    return Err(Error::integrity(format!(
                        "{}: changed during repair",
                        data.path
                    )));
                }
                w.write_all(&buf[..want]).map_err(io_err)?;
            }
            continue;
        }
        let mut originals: Vec<(usize, Vec<u8>)> = Vec::with_capacity(k);
        for idx in 0..k {
            let i = first + idx as u64;
            if i >= l.n {
                originals.push((idx, vec![0u8; BLOCK]));
            } else if !damaged.contains(&i) {
                let want = l.block_len(i);
                let mut b = vec![0u8; BLOCK];
                let f = old
                    .as_mut()
                    .ok_or_else(|| Error::internal("data file vanished"))?;
                if read_upto(f, i * BLOCK as u64, &mut b[..want]).map_err(read_err)? != want {
                    return Err(Error::integrity(format!(
                        "{}: changed during repair",
                        data.path
                    )));
                }
                originals.push((idx, b));
            }
        }
        let recovery = intact_recovery(pf.as_mut(), t, g);
        let restored = reed_solomon_simd::decode(
            k,
            r,
            originals.iter().map(|(i, b)| (*i, b.as_slice())),
            recovery.iter().map(|(j, b)| (*j, b.as_slice())),
        )
        .map_err(|e| {
            Error::integrity(format!("{}: group {g} cannot be decoded ({e})", data.path))
        })?;
        for i in first..last {
            let idx = (i - first) as usize;
            let want = l.block_len(i);
            if damaged.contains(&i) {
                let b = restored.get(&idx).ok_or_else(|| {
                    Error::integrity(format!("{}: block {i} was not restored", data.path))
                })?;
                if !crate::merkle::ct_eq(blake3::hash(&b[..want]).as_bytes(), &t.data[i as usize]) {
                    return Err(Error::integrity(format!(
                        "{}: block {i} rebuilt from parity does not match its recorded hash",
                        data.path
                    )));
                }
                w.write_all(&b[..want]).map_err(io_err)?;
            } else {
                let b = &originals
                    .iter()
                    .find(|(j, _)| *j == idx)
                    .expect("intact block")
                    .1;
                w.write_all(&b[..want]).map_err(io_err)?;
            }
        }
    }
    let (bw, size, hash) = w.finish();
    if size != data.size || !crate::merkle::ct_eq_hex(&hex::encode(hash), &data.blake3) {
        return Err(Error::integrity(format!(
            "{}: the repaired file does not match the manifest; left as it was",
            data.path
        )));
    }
    let staged = bw
        .into_inner()
        .map_err(|e| Error::io(&data_path, "cannot write", e.into_error()))?;
    crate::faults::point("repair-staged");
    staged.commit()
}

/// The outcome of `verify --repair`.
#[derive(Serialize, Debug, Default)]
pub struct RepairReport {
    pub repaired: Vec<Repaired>,
    /// Files that could not be repaired, with the reason.
    pub failed: Vec<(String, String)>,
    /// Temporary files of interrupted writers (`.NAME.tmp` beside a
    /// listed file) that were removed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub removed: Vec<String>,
}

/// Removes, from `unexpected` (vault-relative paths of files the manifest
/// does not list), the temporary files kakuri's own writers leave when
/// killed: `.NAME.tmp` beside a listed `NAME`. Anything else is left for
/// a person to look at.
pub fn remove_stray_temps(root: &Path, m: &Manifest, unexpected: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for u in unexpected {
        let (dir, name) = match u.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), u.as_str()),
        };
        let Some(base) = crate::vault::atomic_tmp_target(name) else {
            continue;
        };
        if m.file(&format!("{dir}{base}")).is_some() && std::fs::remove_file(root.join(u)).is_ok() {
            out.push(u.clone());
        }
    }
    out
}

/// Repairs every file in `bad` (vault-relative paths that failed the
/// keyless check): a data file from its parity, a parity file from its
/// data file. Files without parity (custody files) are reported failed.
pub fn repair_vault(root: &Path, m: &Manifest, bad: &[String]) -> RepairReport {
    let mut rep = RepairReport::default();
    let Some(info) = &m.parity else {
        for b in bad {
            rep.failed.push((
                b.clone(),
                "this vault has no parity; restore it from a copy".into(),
            ));
        }
        return rep;
    };
    let p = match info.params() {
        Ok(p) => p,
        Err(e) => {
            for b in bad {
                rep.failed.push((b.clone(), e.msg.clone()));
            }
            return rep;
        }
    };
    // Each data file once, whether it or its parity file failed.
    let mut targets: Vec<&FileInfo> = Vec::new();
    for b in bad {
        let data_rel = b
            .strip_prefix(&format!("{}/", parity::DIR))
            .and_then(|s| s.strip_suffix(".par"))
            .unwrap_or(b);
        match m.file(data_rel) {
            Some(f) if parity::covers(&f.path) => {
                if !targets.iter().any(|t| t.path == f.path) {
                    targets.push(f);
                }
            }
            _ => rep.failed.push((
                b.clone(),
                "no parity covers this file; restore it from a copy of the vault".into(),
            )),
        }
    }
    for f in targets {
        let Some(par) = m.file(&parity::parity_path(&f.path)) else {
            rep.failed.push((
                f.path.clone(),
                "its parity file is not in the manifest".into(),
            ));
            continue;
        };
        match repair_file(root, f, par, p) {
            Ok(r) => rep.repaired.push(r),
            Err(e) => {
                let why = e
                    .msg
                    .strip_prefix(&format!("{}: ", f.path))
                    .unwrap_or(&e.msg)
                    .to_string();
                rep.failed.push((f.path.clone(), why));
            }
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(p: Params, len: usize) -> (tempfile::TempDir, FileInfo, FileInfo, Vec<u8>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("shards")).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
        std::fs::write(d.path().join("shards/x"), &data).unwrap();
        let info = FileInfo {
            path: "shards/x".into(),
            size: len as u64,
            blake3: blake3::hash(&data).to_hex().to_string(),
        };
        let par = parity::build_from_file(d.path(), &info, p, None).unwrap();
        (d, info, par, data)
    }

    fn set_file(p: &Path, bytes: &[u8]) {
        let _ = std::fs::remove_file(p);
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn r_damaged_blocks_per_group_are_repaired_byte_exact() {
        let p = Params { k: 4, r: 2 };
        let (d, info, par, data) = setup(p, 9 * BLOCK + 123);
        let path = d.path().join("shards/x");
        let mut bad = data.clone();
        bad[5] ^= 1; // block 0
        bad[3 * BLOCK + 9] = 0; // block 3
        bad[9 * BLOCK + 100] ^= 0x80; // block 9 (the short last one)
        set_file(&path, &bad);
        let dmg = diagnose(d.path(), &info, &par, p);
        assert_eq!(dmg.blocks, vec![(0, 0), (3, 3), (9, 9)]);
        assert!(dmg.repairable, "{}", dmg.summary);
        let r = repair_file(d.path(), &info, &par, p).unwrap();
        assert_eq!(r.blocks, vec![(0, 0), (3, 3), (9, 9)]);
        assert!(!r.parity_rebuilt);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn truncation_and_extension_are_repaired() {
        let p = Params { k: 4, r: 2 };
        let (d, info, par, data) = setup(p, 6 * BLOCK + 10);
        let path = d.path().join("shards/x");
        set_file(&path, &data[..5 * BLOCK]);
        let dmg = diagnose(d.path(), &info, &par, p);
        assert_eq!(dmg.blocks, vec![(5, 6)]);
        repair_file(d.path(), &info, &par, p).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let mut longer = data.clone();
        longer.extend_from_slice(b"junk");
        set_file(&path, &longer);
        let dmg = diagnose(d.path(), &info, &par, p);
        assert!(dmg.blocks.is_empty() && dmg.extra_bytes == 4 && dmg.repairable);
        let r = repair_file(d.path(), &info, &par, p).unwrap();
        assert_eq!(r.extra_bytes_removed, 4);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_deleted_small_file_is_rebuilt_entirely_from_parity() {
        let p = Params { k: 64, r: 4 };
        let (d, info, par, data) = setup(p, 3 * BLOCK + 1);
        let path = d.path().join("shards/x");
        std::fs::remove_file(&path).unwrap();
        assert!(diagnose(d.path(), &info, &par, p).repairable);
        repair_file(d.path(), &info, &par, p).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn too_much_damage_is_refused_and_the_file_left_alone() {
        let p = Params { k: 4, r: 2 };
        let (d, info, par, data) = setup(p, 8 * BLOCK);
        let path = d.path().join("shards/x");
        let mut bad = data.clone();
        for b in [4, 5, 6] {
            bad[b * BLOCK] ^= 1;
        }
        set_file(&path, &bad);
        let dmg = diagnose(d.path(), &info, &par, p);
        assert!(!dmg.repairable);
        assert!(dmg.summary.contains("group(s) 1"), "{}", dmg.summary);
        let e = repair_file(d.path(), &info, &par, p).unwrap_err();
        assert!(e.msg.contains("group 1 has 3 damaged"), "{}", e.msg);
        assert_eq!(std::fs::read(&path).unwrap(), bad);
        assert_eq!(
            std::fs::read_dir(d.path().join("shards")).unwrap().count(),
            1
        );
    }

    #[test]
    fn damaged_recovery_blocks_count_against_the_budget_and_parity_is_rebuilt() {
        let p = Params { k: 4, r: 2 };
        let (d, info, par, data) = setup(p, 4 * BLOCK);
        let pp = d.path().join(&par.path);
        let mut pb = std::fs::read(&pp).unwrap();
        pb[10] ^= 1; // recovery block 0 of group 0
        set_file(&pp, &pb);
        let path = d.path().join("shards/x");
        let mut bad = data.clone();
        bad[0] ^= 1;
        bad[BLOCK] ^= 1;
        set_file(&path, &bad);
        // Two damaged data blocks, one intact recovery block: not repairable.
        assert!(!diagnose(d.path(), &info, &par, p).repairable);
        // One damaged data block: repaired, then the parity file rebuilt.
        bad[BLOCK] ^= 1;
        set_file(&path, &bad);
        let r = repair_file(d.path(), &info, &par, p).unwrap();
        assert!(r.parity_rebuilt);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(file_ok(&pp, &par));
    }

    #[test]
    fn damaged_tables_leave_damage_unlocatable() {
        let p = Params { k: 4, r: 2 };
        let (d, info, par, data) = setup(p, 2 * BLOCK);
        let pp = d.path().join(&par.path);
        let l = Layout::new(p, info.size);
        let mut pb = std::fs::read(&pp).unwrap();
        pb[l.meta_offset(0) as usize + 80] ^= 1;
        pb[l.meta_offset(1) as usize + 80] ^= 1;
        set_file(&pp, &pb);
        let mut bad = data.clone();
        bad[0] ^= 1;
        set_file(&d.path().join("shards/x"), &bad);
        let dmg = diagnose(d.path(), &info, &par, p);
        assert!(!dmg.repairable && dmg.summary.contains("cannot be located"));
        assert!(repair_file(d.path(), &info, &par, p).is_err());
        // With the data intact, the parity file is simply rebuilt.
        set_file(&d.path().join("shards/x"), &data);
        assert!(
            repair_file(d.path(), &info, &par, p)
                .unwrap()
                .parity_rebuilt
        );
        assert!(file_ok(&pp, &par));
    }
}
