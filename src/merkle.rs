//! RFC 6962 (Certificate Transparency) Merkle tree over record hashes, with
//! BLAKE3 in place of SHA-256.
//!
//! * leaf hash `= BLAKE3(0x00 || record_hash)`
//! * node hash `= BLAKE3(0x01 || left || right)`
//! * `MTH` splits `n` leaves at the largest power of two smaller than `n`.
//!
//! The tree is stored as *tiles* (see [`tile_levels`]): level 0 holds every
//! leaf hash in record order; level `k+1` holds the root of each block of
//! [`TILE`] consecutive level-`k` hashes. Every aligned block of an RFC 6962
//! tree is a subtree of it, so an inclusion proof is the proof inside the
//! leaf's block followed by the proof of that block's root one level up.
//! With 2048 hashes per block a block is exactly one 64 KiB age chunk.

use subtle::ConstantTimeEq;

pub type Hash = [u8; 32];

/// Hashes per tile block: 2048 × 32 bytes = 64 KiB, one age chunk.
pub const TILE: usize = 2048;

pub fn leaf_hash(record_hash: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(record_hash);
    *h.finalize().as_bytes()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over nodes that are already hashed (leaf hashes or subtree roots).
/// The root of no leaves is BLAKE3 of the empty string, as in RFC 6962.
pub fn root_of(nodes: &[Hash]) -> Hash {
    match nodes.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => nodes[0],
        n => {
            let k = split(n);
            node_hash(&root_of(&nodes[..k]), &root_of(&nodes[k..]))
        }
    }
}

/// RFC 6962 audit path for `index` inside `nodes`, leaf side first.
pub fn path_in(index: usize, nodes: &[Hash]) -> Vec<Hash> {
    let mut out = Vec::new();
    path_rec(index, nodes, &mut out);
    out
}

fn path_rec(m: usize, nodes: &[Hash], out: &mut Vec<Hash>) {
    let n = nodes.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_rec(m, &nodes[..k], out);
        out.push(root_of(&nodes[k..]));
    } else {
        path_rec(m - k, &nodes[k..], out);
        out.push(root_of(&nodes[..k]));
    }
}

/// Recompute the root from a leaf hash and its audit path
/// (RFC 9162 §2.1.3.2). `None` if the path has the wrong shape.
pub fn root_from_path(index: u64, size: u64, leaf: &Hash, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return None;
    }
    Some(r)
}

/// Constant-time equality of two hashes.
pub fn ct_eq(a: &Hash, b: &Hash) -> bool {
    a.ct_eq(b).into()
}

/// Constant-time equality of two hex strings (lengths are not secret).
pub fn ct_eq_hex(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Checks an inclusion proof of `record_hash` at `index` in a tree of `size`
/// leaves against `root`, in constant time for the final comparison.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    record_hash: &Hash,
    path: &[Hash],
    root: &Hash,
) -> bool {
    match root_from_path(index, size, &leaf_hash(record_hash), path) {
        Some(r) => ct_eq(&r, root),
        None => false,
    }
}

/// Number of hashes in each tile level for `n` leaves, bottom (leaves) up,
/// ending with the level that holds the single root. `n = 0` has no levels.
pub fn tile_levels(n: u64, block: u64) -> Vec<u64> {
    let mut v = Vec::new();
    if n == 0 {
        return v;
    }
    let mut s = n;
    v.push(s);
    while s > 1 {
        s = s.div_ceil(block);
        v.push(s);
    }
    v
}

/// Streaming RFC 6962 root: push leaf hashes in order, O(log n) memory.
#[derive(Default)]
pub struct RootBuilder {
    stack: Vec<(u32, Hash)>,
    count: u64,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, node: Hash) {
        let mut cur = (0u32, node);
        while let Some(&(h, ref top)) = self.stack.last() {
            if h != cur.0 {
                break;
            }
            let merged = node_hash(top, &cur.1);
            self.stack.pop();
            cur = (h + 1, merged);
        }
        self.stack.push(cur);
        self.count += 1;
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut r)) = it.next() else {
            return root_of(&[]);
        };
        for (_, l) in it {
            r = node_hash(l, &r);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(blake3::hash(&(i as u64).to_le_bytes()).as_bytes()))
            .collect()
    }

    /// Tile proof: the proof inside the block, then the block's proof above.
    fn tile_proof(mut index: usize, level0: &[Hash], block: usize) -> (Vec<Hash>, Hash) {
        let mut level = level0.to_vec();
        let mut path = Vec::new();
        while level.len() > 1 {
            let b = index / block;
            let start = b * block;
            let end = (start + block).min(level.len());
            path.extend(path_in(index - start, &level[start..end]));
            level = level.chunks(block).map(root_of).collect();
            index = b;
        }
        (path, level[0])
    }

    #[test]
    fn every_path_verifies_and_tiles_agree() {
        for n in 1..=70usize {
            let l = leaves(n);
            let root = root_of(&l);
            let mut b = RootBuilder::new();
            l.iter().for_each(|h| b.push(*h));
            assert_eq!(b.root(), root, "streaming root n={n}");
            for i in 0..n {
                let p = path_in(i, &l);
                assert_eq!(root_from_path(i as u64, n as u64, &l[i], &p), Some(root));
                for block in [2usize, 4, 8] {
                    let (tp, troot) = tile_proof(i, &l, block);
                    assert_eq!(troot, root, "tile root n={n} block={block}");
                    assert_eq!(tp, p, "tile path n={n} i={i} block={block}");
                }
            }
        }
    }

    #[test]
    fn wrong_index_size_or_sibling_fails() {
        let l = leaves(13);
        let root = root_of(&l);
        let p = path_in(5, &l);
        assert!(root_from_path(6, 13, &l[5], &p) != Some(root));
        assert!(root_from_path(13, 13, &l[5], &p).is_none());
        let mut bad = p.clone();
        bad[1][0] ^= 1;
        assert!(root_from_path(5, 13, &l[5], &bad) != Some(root));
        assert!(root_from_path(5, 13, &l[5], &p[..p.len() - 1]).is_none());
    }

    const KNOWN_ROOT_ABC: &str = "b48b2f18b1a5dc76fb88b4208addf4a4cacee090544db7005295d4ea38da4b67";

    #[test]
    fn known_vector() {
        // Test vector for FORMAT.md: three records whose hashes are
        // BLAKE3("a"), BLAKE3("b"), BLAKE3("c").
        let rh: Vec<Hash> = ["a", "b", "c"]
            .iter()
            .map(|s| *blake3::hash(s.as_bytes()).as_bytes())
            .collect();
        let l: Vec<Hash> = rh.iter().map(leaf_hash).collect();
        let root = root_of(&l);
        assert_eq!(root, node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(hex::encode(root), KNOWN_ROOT_ABC);
    }

    #[test]
    fn levels_shape() {
        assert_eq!(tile_levels(1, 2048), vec![1]);
        assert_eq!(tile_levels(2048, 2048), vec![2048, 1]);
        assert_eq!(tile_levels(2049, 2048), vec![2049, 2, 1]);
        assert_eq!(tile_levels(1_711_756, 2048), vec![1_711_756, 836, 1]);
    }
}
