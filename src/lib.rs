//! kakuri: seal a leaked data set into encrypted, content-hashed archives,
//! answer verified lookups, and destroy it with a checkable certificate.

pub mod audit;
pub mod batch;
pub mod certificate;
pub mod crypt;
pub mod custody;
pub mod demo;
pub mod destroy;
pub mod erase;
pub mod error;
pub mod export;
pub mod faults;
pub mod index;
pub mod input;
pub mod keys;
pub mod lookup;
pub mod manifest;
pub mod merkle;
pub mod pack;
pub mod parity;
pub mod receipt;
pub mod record;
pub mod repair;
pub mod shard;
pub mod status;
pub mod synth;
pub mod vault;
pub mod verify;
