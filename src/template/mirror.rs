//! Whether the mirror answers at all, asked before mmdebstrap spends
//! seconds setting up: a TCP connection to its host and port (or, for a
//! file:/// mirror, its directory). apt's own errors still say more.

use super::error::TemplateError;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const CONNECT: Duration = Duration::from_secs(10);

pub fn reachable(mirror: &str) -> Result<(), TemplateError> {
    let fail = |detail: String| TemplateError::MirrorUnreachable { mirror: mirror.to_string(), detail };
    if let Some(path) = mirror.strip_prefix("file://") {
        return if std::path::Path::new(path).is_dir() { Ok(()) } else { Err(fail(format!("{path} is not a directory"))) };
    }
    let (rest, port) = match mirror.strip_prefix("https://") {
        Some(r) => (r, 443),
        None => (mirror.strip_prefix("http://").unwrap_or(mirror), 80),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => (authority, port),
        },
        _ => (authority, port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(|e| fail(format!("cannot resolve {host}: {e}")))?.collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    Err(fail(last.unwrap_or_else(|| format!("{host} has no address"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_unreachable_and_a_listening_one_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(reachable(&format!("http://127.0.0.1:{port}/debian")).is_ok());
        drop(l);
        let e = reachable(&format!("http://127.0.0.1:{port}/debian")).unwrap_err();
        assert!(matches!(e, TemplateError::MirrorUnreachable { .. }), "{e}");
        assert!(reachable("file:///nonexistent-mln-mirror").is_err());
    }
}
