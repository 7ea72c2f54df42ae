#!/usr/bin/env python3
"""Repair one damaged kakuri vault file from its parity file, without kakuri.

An independent implementation of docs/FORMAT.md section 7a, for a third
party who holds a vault and neither trusts nor has kakuri:

    pip install reed-solomon-leopard blake3
    python3 parity-repair.py VAULT shards/000003.tar.zst.age

It reads the parity settings, the file's size and BLAKE3 from VAULT's
manifest.json (check its signature first: FORMAT.md recipe 16.1), finds
the damaged 64 KiB blocks with the parity file's block table, rebuilds
them, and writes the result next to the damaged file as FILE.repaired
only if its BLAKE3 equals the manifest's. Exit status 0: repaired (or
nothing to repair); 1: not repairable; 2: usage.
"""

import json
import os
import sys

import blake3
import reed_solomon_leopard

MAGIC = b"kakuri-parity/1\n"
ALG = "reed-solomon-gf16-leopard/reed-solomon-simd-3"


def main(vault, rel):
    manifest = json.load(open(os.path.join(vault, "manifest.json"), "rb"))
    par = manifest.get("parity")
    if not par or par["alg"] != ALG:
        sys.exit("no parity of a known kind in this vault")
    block, k, r = par["block"], par["group_data"], par["group_parity"]
    files = {f["path"]: f for f in manifest["files"]}
    data, pfile = files[rel], files["parity/" + rel + ".par"]
    size, want = data["size"], bytes.fromhex(data["blake3"])

    n = -(-size // block)  # data blocks
    groups = -(-n // k)
    recovery_blocks = groups * r
    meta_len = 72 + 32 * (n + recovery_blocks) + 32
    header = (MAGIC + block.to_bytes(4, "little") + k.to_bytes(4, "little")
              + r.to_bytes(4, "little") + bytes(4) + size.to_bytes(8, "little") + want)

    pbytes = open(os.path.join(vault, pfile["path"]), "rb").read()
    table = None
    for c in (0, 1):
        off = recovery_blocks * block + c * meta_len
        meta = pbytes[off:off + meta_len]
        if len(meta) == meta_len and blake3.blake3(header + meta[72:-32]).digest() == meta[-32:]:
            table = meta[72:-32]
            break
    if table is None:
        print("both block tables of the parity file are damaged: cannot locate damage")
        return 1
    h = lambda i: table[32 * i:32 * i + 32]  # noqa: E731

    cur = open(os.path.join(vault, rel), "rb").read() if os.path.exists(os.path.join(vault, rel)) else b""

    def block_len(i):
        return max(0, min(block, size - i * block))

    def data_block(i):
        return cur[i * block:i * block + block_len(i)]

    bad = [i for i in range(n) if blake3.blake3(data_block(i)).digest() != h(i)
           or len(data_block(i)) != block_len(i)]
    print(f"{rel}: {len(bad)} damaged block(s): {bad}")
    out = bytearray()
    for g in range(groups):
        idx = range(g * k, min((g + 1) * k, n))
        lost = [i for i in idx if i in bad]
        if lost:
            original = {}
            for j in range(k):
                i = g * k + j
                if i >= n:
                    original[j] = bytes(block)  # past the end: zero blocks
                elif i not in lost:
                    original[j] = data_block(i).ljust(block, b"\0")
            recovery = {}
            for j in range(r):
                o = (g * r + j) * block
                rb = pbytes[o:o + block]
                if len(rb) == block and blake3.blake3(rb).digest() == h(n + g * r + j):
                    recovery[j] = rb
            if len(original) + len(recovery) < k:
                print(f"group {g}: {len(lost)} damaged, {len(recovery)} recovery block(s) intact: not repairable")
                return 1
            restored = reed_solomon_leopard.decode(k, r, original, recovery)
        for i in idx:
            if i in lost:
                b = bytes(restored[i - g * k])[:block_len(i)]
                if blake3.blake3(b).digest() != h(i):
                    print(f"block {i}: rebuilt bytes do not match the table")
                    return 1
                out += b
            else:
                out += data_block(i)
    if blake3.blake3(bytes(out)).digest() != want or len(out) != size:
        print("the result does not match the manifest")
        return 1
    dest = os.path.join(vault, rel + ".repaired")
    with open(dest, "wb") as f:
        f.write(out)
    print(f"wrote {dest}: BLAKE3 matches the manifest")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
