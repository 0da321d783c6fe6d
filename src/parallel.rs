//! Work on many hosts at once: a map over a slice on all cores, each worker
//! with its own diagnostics, merged in order afterwards.

use crate::diag::Diagnostics;
use std::mem::MaybeUninit;

/// Below this many items a single thread is faster than starting others.
const MIN_PER_THREAD: usize = 256;

/// Maps each item to two results, each written straight into its own
/// vector: collecting pairs and unzipping them held every result twice at
/// the peak.
pub fn map2<T: Sync, R: Send, S: Send>(
    items: &[T],
    diags: &mut Diagnostics,
    f: impl Fn(&T, &mut Diagnostics) -> (R, S) + Sync,
) -> (Vec<R>, Vec<S>) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(|i| f(i, diags)).unzip();
    }
    let chunk = items.len().div_ceil(threads);
    // Each worker writes its results straight into its part of the one
    // output vector: collecting parts and then copying them into it held
    // every result twice at the peak (100,000 hosts: ~75 MB more).
    let mut out: Vec<R> = Vec::with_capacity(items.len());
    let mut out2: Vec<S> = Vec::with_capacity(items.len());
    let parts: Vec<Diagnostics> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .zip(out.spare_capacity_mut()[..items.len()].chunks_mut(chunk))
            .zip(out2.spare_capacity_mut()[..items.len()].chunks_mut(chunk))
            .map(|((part, slots), slots2)| {
                let f = &f;
                s.spawn(move || {
                    let mut d = Diagnostics::default();
                    for ((i, slot), slot2) in part.iter().zip(slots.iter_mut()).zip(slots2.iter_mut()) {
                        let (r, r2) = f(i, &mut d);
                        *slot = MaybeUninit::new(r);
                        *slot2 = MaybeUninit::new(r2);
                    }
                    d
                })
            })
            .collect();
        // A worker that panics takes the process down here; the slots
        // written so far are leaked, never read.
        handles.into_iter().map(|h| h.join().expect("worker threads do not panic")).collect()
    });
    // SAFETY: every worker returned, so each of the first `items.len()`
    // slots (the chunks cover them all, in order) holds a written value.
    unsafe {
        out.set_len(items.len());
        out2.set_len(items.len());
    }
    for d in parts {
        diags.extend(d.into_vec());
    }
    (out, out2)
}

/// Maps each item on all cores, the results in the items' order. For a few
/// large items of uneven cost (a file's pieces): each thread takes the next
/// item not yet taken, and the calling thread works too. Workers get the
/// main thread's usual stack (8 MiB): the parser recurses once per level
/// of nesting.
pub fn map_each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else { return done };
            done.push((i, f(item)));
        }
    };
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().stack_size(8 << 20).spawn_scoped(s, work).ok())
            .collect();
        // A thread that could not be started leaves its items to the others.
        for (i, r) in work() {
            slots[i] = Some(r);
        }
        for h in helpers {
            for (i, r) in h.join().expect("worker threads do not panic") {
                slots[i] = Some(r);
            }
        }
    });
    slots.into_iter().map(|r| r.expect("every item is taken by a thread")).collect()
}
