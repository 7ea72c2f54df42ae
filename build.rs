//! Linking. A lookup is a short-lived process, and with the page cache
//! cold every byte of the binary, and of each shared library that no
//! running process has mapped, is read from disk before `main` runs
//! (about 1.5 ms per MB here; BENCHMARKS.md, "Cold lookup"). The binaries
//! are linked dynamically against glibc: `libc.so.6` is mapped by every
//! running process, so it is in memory, where linking glibc statically
//! made each binary 0.9 MB larger. Rust's standard library would also
//! load `libgcc_s` for its unwinder, which is not in memory, so release
//! builds on GNU/Linux link gcc's unwinder (`libgcc_eh.a`, which comes
//! with gcc) into the binary instead: a release build is fat-LTO'd into
//! one object that the linker reads before any library, so `libgcc_eh.a`
//! resolves the unwinder's symbols and `libgcc_s` is dropped as unneeded.
//! `kakuri-lookup` then loads `libc.so.6` alone (`kakuri` also `libm`,
//! for the progress bars' `pow`). Anywhere else (debug builds, other
//! platforms, `crt-static`) this changes nothing.
use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("PROFILE") == "release"
        && !static_crt
    {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
