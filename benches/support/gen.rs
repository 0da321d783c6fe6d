//! Project generators for the plan benchmark.

/// The network the hosts are numbered in: a /16 while they fit (as MLN's
/// own examples), a /15 beyond (100,000 hosts): (prefix, netmask).
fn subnet(n: usize) -> (u32, &'static str) {
    if n + 10 < 65_534 {
        (16, "255.255.0.0")
    } else {
        (15, "255.254.0.0")
    }
}

/// (a) One autoenum block stamping out `n` hosts over a /16 (a /15 past
/// 65,000), dealt over 100 service hosts from an included servers file.
pub fn autoenum(n: usize) -> (String, String) {
    let per = n.div_ceil(100);
    let (prefix, mask) = subnet(n);
    let servers: String = (1..=100).map(|i| format!("srv{i:03}.example.org {per}\n")).collect();
    let project = format!(
        "global {{\n    project bench_autoenum\n    $gw = 10.0.0.1\n    autoenum {{\n        superclass node\n        numhosts {n}\n        address auto\n        net 10.0.0.0/{prefix}\n        addresses_begin 10\n        service_hosts {{\n            #include servers.txt\n        }}\n    }}\n}}\n\n{}",
        superclass(mask)
    );
    (project, servers)
}

/// (b) `n` explicit host blocks inheriting one superclass. Each host's
/// interface has no switch: `n` `user_mode` warnings.
#[allow(dead_code)]
pub fn explicit(n: usize) -> String {
    explicit_on(n, false)
}

/// (c) As (b), with the superclass's interface on a switch `lan`: the same
/// hosts without a warning, so that (b) less (c) is what rendering the
/// warnings costs.
#[allow(dead_code)]
pub fn explicit_switched(n: usize) -> String {
    explicit_on(n, true)
}

fn explicit_on(n: usize, switched: bool) -> String {
    let (_, mask) = subnet(n);
    let mut class = superclass(mask);
    let mut switch = "";
    if switched {
        class = class.replacen("    network eth0 {\n", "    network eth0 {\n        switch lan\n", 1);
        switch = "switch lan {\n}\n\n";
    }
    let mut s = format!("global {{\n    project bench_explicit\n    $gw = 10.0.0.1\n}}\n\n{switch}{class}");
    for i in 0..n {
        let addr = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + i as u32 + 10);
        s += &format!(
            "host node{i:05} {{\n    superclass node\n    service_host srv{:03}.example.org\n    network eth0 {{\n        address {addr}\n    }}\n}}\n",
            i % 100 + 1
        );
    }
    s
}

fn superclass(mask: &str) -> String {
    format!("superclass node {{\n    memory 256M\n    vcpus 1\n    template debian-12.qcow2\n    size 2G\n    network eth0 {{\n        netmask {mask}\n        gateway $gw\n    }}\n    users {{\n        admin $6$admin$9Mkt0MqPlhzBEASCFuUj7uKR9BIbqdld.GkQfxeGwYp0FtCPO.5JcvZFMtayVcHXjvdLUUdBET0yY4zguacd1.\n    }}\n    startup {{\n        echo booted $hostname\n    }}\n}}\n")
}
