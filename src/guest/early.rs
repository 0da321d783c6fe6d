//! What a login needs, as plain files on the seed beside cloud-init's:
//! the early unit of the templates mln builds (src/template/tuning.rs)
//! reads them with a shell, before cloud-init's Python has started, so
//! they are lines of words, not YAML. cloud-init ignores them and applies
//! the same from its own files.

use crate::login::keys::GuestKeys;
use crate::plan::Host;

/// `(file name on the seed, content)`.
pub fn files(h: &Host, k: &GuestKeys) -> Vec<(&'static str, String)> {
    let mut out = vec![("mln-hostname", format!("{}\n", h.name)), ("mln-authorized-keys", lines(&super::nocloud::authorized(h, k)))];
    if let Some(hk) = &k.host {
        out.push(("mln-host-key", hk.private_openssh.clone()));
        out.push(("mln-host-key.pub", format!("{}\n", hk.public_openssh.trim_end())));
    }
    out.push(("mln-links", links(h)));
    out
}

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{}\n", l.trim_end())).collect()
}

/// One line per interface: `MAC NAME ADDRESS/PREFIX GATEWAY`, with `dhcp`
/// or `-` for the address and `-` for no gateway.
fn links(h: &Host) -> String {
    h.interfaces
        .iter()
        .map(|i| {
            let addr = match (&i.address, i.dhcp) {
                (_, true) => "dhcp".to_string(),
                (Some(a), false) => format!("{a}/{}", super::nocloud::prefix(i)),
                (None, false) => "-".to_string(),
            };
            format!("{} {} {addr} {}\n", i.mac.to_ascii_lowercase(), i.name, i.gateway.as_deref().filter(|_| !i.dhcp).unwrap_or("-"))
        })
        .collect()
}
