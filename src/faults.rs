//! Fault injection for crash tests: `KAKURI_FAULT=POINT:N` makes the
//! process abort (no destructors, no cleanup — like `kill -9`) the N-th
//! time it reaches `POINT`. Unset, every point is a no-op costing one
//! environment lookup on first use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("KAKURI_FAULT").ok()?;
        let (p, n) = v.rsplit_once(':')?;
        Some((p.to_string(), n.parse().ok()?))
    })
}

/// Marks a crash point.
pub fn point(name: &str) {
    if let Some((p, n)) = spec() {
        if p == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("kakuri: fault injected at {name}:{n}");
            std::process::abort();
        }
    }
}
