//! `mln-hop PORT FILTER SINK LOG TAG`: a node's part of the bare-metal
//! image chain in one process (`mln::baremetal::hop`), put into the deploy
//! system's initramfs. Tiny on purpose: it links only libc (and libgcc_s),
//! so it runs in the initramfs with the libraries ldd names.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by SIGTERM/SIGINT (mln's stop of a pass that hangs): the hop ends
/// its stream there and reports what it got.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_term(_: libc::c_int) {
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::SeqCst);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The chain script's test that this binary runs here at all.
    if args == ["--check"] {
        println!("mln-hop");
        return;
    }
    let cfg = match mln::baremetal::hop::Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mln-hop: {e}\nusage: mln-hop PORT FILTER SINK LOG|- TAG");
            std::process::exit(2);
        }
    };
    let stop = STOP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    let arm = || {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
            libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
        }
    };
    let code = mln::baremetal::hop::run(&cfg, &mut std::io::stdin().lock(), &mut std::io::stdout().lock(), stop, &arm);
    std::process::exit(code);
}
