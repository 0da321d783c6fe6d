//! Work on many hosts at once: a map over a slice on all cores, each worker
//! with its own diagnostics, merged in order afterwards.

use crate::diag::Diagnostics;

/// Below this many items a single thread is faster than starting others.
const MIN_PER_THREAD: usize = 256;

pub fn map<T: Sync, R: Send>(items: &[T], diags: &mut Diagnostics, f: impl Fn(&T, &mut Diagnostics) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(|i| f(i, diags)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let results: Vec<(Vec<R>, Diagnostics)> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                s.spawn(move || {
                    let mut d = Diagnostics::default();
                    let out = part.iter().map(|i| f(i, &mut d)).collect();
                    (out, d)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker threads do not panic")).collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for (part, d) in results {
        out.extend(part);
        diags.extend(d.into_vec());
    }
    out
}
