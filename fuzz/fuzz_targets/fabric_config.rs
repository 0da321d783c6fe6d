//! Any bytes as a fabric configuration (TOML) and as a servers file: no
//! panic, and a fabric that loads has every setting in range. A NUL byte
//! splits the input: before it the file, after it the servers file the
//! TOML names (`servers = "..."`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mln::fabric::config::{self, Fabric};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (main, servers) = text.split_once('\0').unwrap_or((text, "h1 2\nh2 all\n"));
    for path in ["fabric.toml", "servers.txt"] {
        let Ok(f) = Fabric::parse(main, Path::new(path), |_| Ok(servers.to_string())) else { continue };
        assert!(f.problems().is_empty(), "{:?}", f.problems());
        assert!((1..=config::MAX_FANOUT).contains(&f.fanout));
        for name in f.names() {
            let s = f.server(&name);
            assert!(mln::name::check(mln::name::NameKind::ServiceHost, &s.name).is_ok(), "{name:?}");
            assert!(s.port != 0);
            assert!((1..=config::MAX_CONNECT_TIMEOUT).contains(&s.connect_timeout));
            assert!(s.max_vms.is_none_or(|v| v <= config::MAX_VMS_PER_HOST));
            assert!(s.memory_mib.is_none_or(|m| (1..=config::MAX_MEMORY_MIB).contains(&m)));
            assert!(s.vcpus.is_none_or(|v| (1..=config::MAX_VCPUS).contains(&v)));
            assert!(!s.address.is_empty() && !s.address.starts_with('-'), "{:?}", s.address);
        }
    }
    let _ = config::parse_servers(main, Path::new("s.txt"));
    let _ = config::parse_mib(main);
});
