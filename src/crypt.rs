//! The per-vault key and age streams over vault files.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Bytes of plaintext in one age payload chunk.
pub const AGE_CHUNK: u64 = 64 * 1024;
/// Bytes of ciphertext in one age payload chunk (plaintext + Poly1305 tag).
pub const AGE_CHUNK_CT: u64 = AGE_CHUNK + 16;

/// Bytes read from vault files by this process (for `--json` I/O reports
/// and for tests that check that a lookup reads O(1) chunks).
static BYTES_READ: AtomicU64 = AtomicU64::new(0);

pub fn bytes_read() -> u64 {
    BYTES_READ.load(Ordering::Relaxed)
}

/// The per-vault key: an age X25519 identity, and keys derived from it.
pub struct VaultKey {
    identity: age::x25519::Identity,
    secret: Zeroizing<String>,
    index_key: Zeroizing<[u8; 32]>,
}

impl VaultKey {
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let secret = Zeroizing::new(identity.to_string().expose_secret().to_string());
        let index_key = Zeroizing::new(blake3::derive_key(
            "kakuri 2026-11 blind index v1",
            secret.as_bytes(),
        ));
        VaultKey {
            identity,
            secret,
            index_key,
        }
    }

    /// Parses the plaintext of the wrapped vault-key file (age-keygen form).
    pub fn parse(text: &str) -> Result<Self> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .ok_or_else(|| Error::integrity("the unwrapped vault key is not an age identity"))?;
        let id = age::x25519::Identity::from_str(line)
            .map_err(|_| Error::integrity("the unwrapped vault key is not a valid age identity"))?;
        Ok(Self::from_identity(id))
    }

    /// The vault key as an age-keygen style file (what custodians unwrap).
    pub fn to_file_text(&self, vault_id: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# kakuri vault key for vault {vault_id}\n# public key: {}\n{}\n",
            self.identity.to_public(),
            self.secret.as_str()
        ))
    }

    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }

    pub fn recipient(&self) -> age::x25519::Recipient {
        self.identity.to_public()
    }

    /// Keyed BLAKE3 of one lookup field; truncated to 16 bytes in the index.
    pub fn blind(&self, field: crate::record::Field, value: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.index_key);
        h.update(&[field as u8]);
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value);
        *h.finalize().as_bytes()
    }

    /// A key for other keyed hashes (audit queries), domain-separated.
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, self.secret.as_bytes()))
    }
}

/// Starts an age stream to `recipient` over `out`.
pub fn encrypt_stream<W: Write>(
    recipients: &[&dyn age::Recipient],
    out: W,
) -> Result<age::stream::StreamWriter<W>> {
    let enc = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|e| Error::internal(format!("cannot set up encryption: {e}")))?;
    enc.wrap_output(out)
        .map_err(|e| Error::io_ctx("cannot start encrypted stream", e))
}

/// A file reader that counts bytes into [`bytes_read`].
pub struct CountingFile(File);

impl Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for CountingFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

pub type SeekableReader = age::stream::StreamReader<BufReader<CountingFile>>;

/// Opens an encrypted vault file for seekable reading with the vault key.
/// `name` is the vault-relative name used in messages.
pub fn open_encrypted(path: &Path, name: &str, key: &VaultKey) -> Result<SeekableReader> {
    let f = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::integrity(format!("{name} is missing from the vault"))
        } else {
            Error::io(path, "cannot open", e)
        }
    })?;
    let r = BufReader::with_capacity(AGE_CHUNK_CT as usize, CountingFile(f));
    let d = age::Decryptor::new_buffered(r)
        .map_err(|e| Error::integrity(format!("{name}: not a valid age file ({e})")))?;
    d.decrypt(std::iter::once(&key.identity as &dyn age::Identity))
        .map_err(|e| {
            Error::integrity(format!(
                "{name}: cannot be decrypted with this vault's key ({e})"
            ))
        })
}

/// Reads exactly `buf.len()` plaintext bytes at `offset`, naming `name` in errors.
pub fn read_at(r: &mut SeekableReader, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
    r.seek(SeekFrom::Start(offset))
        .and_then(|_| r.read_exact(buf))
        .map_err(|e| {
            Error::integrity(format!(
                "{name}: cannot read {} bytes at plaintext offset {offset} (age chunk {}): {e}",
                buf.len(),
                offset / AGE_CHUNK
            ))
        })
}

type EncInner = age::stream::StreamWriter<
    crate::vault::HashingWriter<
        crate::parity::ParityTee<std::io::BufWriter<crate::vault::AtomicFile>>,
    >,
>;

/// A vault file being written: age-encrypted to the vault key, hashed as
/// written, and moved into place atomically by [`EncryptedFile::finish`].
pub struct EncryptedFile {
    name: String,
    w: EncInner,
}

impl EncryptedFile {
    pub fn create(root: &Path, rel: &str, key: &VaultKey) -> Result<Self> {
        Self::create_with_parity(root, rel, key, None)
    }

    /// Like [`EncryptedFile::create`]; with `parity`, the file's parity
    /// file is built from the ciphertext as it is written.
    pub fn create_with_parity(
        root: &Path,
        rel: &str,
        key: &VaultKey,
        parity: Option<crate::parity::Params>,
    ) -> Result<Self> {
        let file = crate::vault::AtomicFile::create(&root.join(rel), 0o444)?;
        let builder = parity
            .map(|p| crate::parity::ParityBuilder::create(root, rel, p, false))
            .transpose()?;
        let out = crate::vault::HashingWriter::new(crate::parity::ParityTee::new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            builder,
        ));
        let recipient = key.recipient();
        let w = encrypt_stream(&[&recipient], out)?;
        Ok(EncryptedFile {
            name: rel.to_string(),
            w,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seals the age stream, syncs and renames; returns size and BLAKE3.
    pub fn finish(self) -> Result<crate::manifest::FileInfo> {
        Ok(self.finish_with_parity()?.0)
    }

    /// Like [`EncryptedFile::finish`], and also completes the parity file
    /// (if the file was created with parity) and returns its description.
    pub fn finish_with_parity(
        self,
    ) -> Result<(crate::manifest::FileInfo, Option<crate::manifest::FileInfo>)> {
        let name = self.name;
        let hw = self
            .w
            .finish()
            .map_err(|e| Error::io_ctx(format!("cannot finish {name}"), e))?;
        let (tee, size, hash) = hw.finish();
        let (buf, parity) = tee.into_parts();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io_ctx(format!("cannot flush {name}"), e.into_error()))?;
        file.commit()?;
        let parity = parity.map(|p| p.finish(&hash, None)).transpose()?;
        Ok((
            crate::manifest::FileInfo {
                path: name,
                size,
                blake3: hex::encode(hash),
            },
            parity,
        ))
    }
}

impl Write for EncryptedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}
