//! Project generators for the plan benchmark (also used by `mln-gen`).

/// (a) One autoenum block stamping out `n` hosts over a /16, dealt over
/// 100 service hosts from an included servers file.
pub fn autoenum(n: usize) -> (String, String) {
    let per = n.div_ceil(100);
    let servers: String = (1..=100).map(|i| format!("srv{i:03}.example.org {per}\n")).collect();
    let project = format!(
        "global {{\n    project bench_autoenum\n    $gw = 10.0.0.1\n    autoenum {{\n        superclass node\n        numhosts {n}\n        address auto\n        net 10.0.0.0/16\n        addresses_begin 10\n        service_hosts {{\n            #include servers.txt\n        }}\n    }}\n}}\n\n{}",
        superclass()
    );
    (project, servers)
}

/// (b) `n` explicit host blocks inheriting one superclass.
pub fn explicit(n: usize) -> String {
    let mut s = format!("global {{\n    project bench_explicit\n    $gw = 10.0.0.1\n}}\n\n{}", superclass());
    for i in 0..n {
        let (hi, lo) = ((i + 10) / 256, (i + 10) % 256);
        s += &format!(
            "host node{i:05} {{\n    superclass node\n    service_host srv{:03}.example.org\n    network eth0 {{\n        address 10.0.{hi}.{lo}\n    }}\n}}\n",
            i % 100 + 1
        );
    }
    s
}

fn superclass() -> String {
    "superclass node {\n    memory 256M\n    vcpus 1\n    template debian-12.qcow2\n    size 2G\n    network eth0 {\n        netmask 255.255.0.0\n        gateway $gw\n    }\n    users {\n        admin $6$admin$9Mkt0MqPlhzBEASCFuUj7uKR9BIbqdld.GkQfxeGwYp0FtCPO.5JcvZFMtayVcHXjvdLUUdBET0yY4zguacd1.\n    }\n    startup {\n        echo booted $hostname\n    }\n}\n".to_string()
}
