//! Work on many machines at once, a window at a time.

use super::Outcome;
use crate::progress::{Event, Telemetry};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Machines worked on at once: backend calls wait on QEMU (or a BMC, or a
/// network) more than on this machine's CPU.
const WINDOW: usize = 8;

/// Runs `f` for each item, [`WINDOW`] at a time, telling `t` as each one
/// finishes; outcomes come back in the items' order.
pub fn each<T: Sync>(op: &str, items: &[T], t: &dyn Telemetry, f: impl Fn(&T) -> Outcome + Sync) -> Vec<Outcome> {
    t.event(&Event::Begin { op: op.to_string(), total: items.len() });
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; items.len()]);
    std::thread::scope(|s| {
        for _ in 0..WINDOW.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let o = f(item);
                t.event(&Event::Done { op: op.to_string(), outcome: o.clone() });
                out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(o);
            });
        }
    });
    t.event(&Event::End { op: op.to_string() });
    out.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}
