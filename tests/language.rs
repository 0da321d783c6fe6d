//! Language rules, each checked on a small project held in memory.

mod common;
use common::*;

fn plan(text: &str) -> mln::plan::Plan {
    let c = compile_mem(&[("p.mln", text)]);
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    c.plan
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let c = compile_mem(&[
        ("proj/main.mln", "global {\n project p\n}\n#include lib/a.mln\n"),
        ("proj/lib/a.mln", "#include b.mln\nhost a {\n superclass s\n}\n"),
        ("proj/lib/b.mln", "superclass s {\n memory 77M\n}\n"),
    ]);
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    assert_eq!(c.plan.hosts[0].memory_mib, 77);
    // Diagnostics in an included file name that file.
    let c = compile_mem(&[("main.mln", "global {\n project p\n}\n#include x.mln\n"), ("x.mln", "host a {\n memroy 1M\n}\n")]);
    assert_eq!(c.sources.location(c.diags.sorted()[0].primary_span().unwrap()), "x.mln:2:2");
}

#[test]
fn statements_end_at_semicolons_and_braces_anywhere() {
    let p = plan("global { project p }\nhost a{memory 64M; vcpus 2; boot_order 3}");
    assert_eq!((p.hosts[0].memory_mib, p.hosts[0].vcpus, p.hosts[0].boot_order), (64, 2, 3));
}

#[test]
fn scalars_repeated_last_wins_and_aliases_work() {
    let p = plan("global {\n project p\n}\nhost a {\n memory 1M\n memory 2M\n location srv9\n root_passwd $6$saltsalt$o1sgYDV8VZcOve24efNWklRNXcLE3g0hTn.yk/35V.zlJ/bsjDWvvF9ir1i.OPVFTXvpnFTVBuiD2wZ3n9RnQ/\n}\n");
    let h = &p.hosts[0];
    assert_eq!(h.memory_mib, 2);
    assert_eq!(h.service_host.as_deref(), Some("srv9"));
    assert_eq!(h.root_password_hash.as_deref(), Some("$6$saltsalt$o1sgYDV8VZcOve24efNWklRNXcLE3g0hTn.yk/35V.zlJ/bsjDWvvF9ir1i.OPVFTXvpnFTVBuiD2wZ3n9RnQ/"));
}

#[test]
fn hostname_in_a_superclass_means_the_host() {
    let p = plan("global {\n project p\n}\nsuperclass s {\n description $hostname of $project\n}\nhost x {\n superclass s\n}\nhost y {\n superclass s\n}\n");
    assert_eq!(p.hosts[0].description.as_deref(), Some("x of p"));
    assert_eq!(p.hosts[1].description.as_deref(), Some("y of p"));
}

#[test]
fn deep_chains_inherit_and_lists_do_not_repeat() {
    let mut text = String::from("global {\n project p\n}\nsuperclass s0 {\n modules {\n  m0\n }\n}\n");
    for i in 1..8 {
        text += &format!("superclass s{i} {{\n superclass s{}\n modules {{\n  m{i}\n  m0\n }}\n}}\n", i - 1);
    }
    text += "host h {\n superclass s7\n}\n";
    let p = plan(&text);
    assert_eq!(p.hosts[0].modules, ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
}

#[test]
fn crypt_hashes_are_literal_but_a_sole_variable_is_expanded() {
    let sha = "$6$abc$kR2twyDfICz19lmC2EXet9F8qkKf.G4bsS2QKx0s29FmeEiYBuQXnoSrRDpHhNFSdA8iby559AG/cvBXxaV0N1";
    let p = plan(&format!(
        "global {{\n project p\n $h = {}\n}}\nhost a {{\n root_password $h\n users {{\n  u $1$salt$XaOznXGk4AYqiN1khFvXg/\n }}\n}}\n",
        sha.replace('$', "\\$")
    ));
    assert_eq!(p.hosts[0].root_password_hash.as_deref(), Some(sha));
    assert_eq!(p.hosts[0].users[0].password_hash, "$1$salt$XaOznXGk4AYqiN1khFvXg/");
}

#[test]
fn quoted_values_keep_special_characters() {
    let p = plan("global {\n project p\n}\nhost a {\n description \"a # b; c { }\"\n}\n");
    assert_eq!(p.hosts[0].description.as_deref(), Some("a # b; c { }"));
}

#[test]
fn autoenum_pads_numbers_to_the_width_of_the_count() {
    let text = |n: u32| format!("global {{\n project p\n autoenum {{\n  superclass s\n  numhosts {n}\n }}\n}}\nsuperclass s {{\n}}\n");
    let names = |n| plan(&text(n)).hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(3), ["node1", "node2", "node3"]);
    let ten = names(10);
    assert_eq!((ten[0].as_str(), ten[9].as_str()), ("node01", "node10"));
    assert_eq!(names(100)[0], "node001");
}

#[test]
fn autoenum_hosts_collide_with_explicit_hosts_loudly() {
    let c = compile_mem(&[(
        "p.mln",
        "global {\n project p\n autoenum {\n  superclass s\n  numhosts 2\n }\n}\nsuperclass s {\n}\nhost node2 {\n}\n",
    )]);
    assert_eq!(codes(&c), ["mln::duplicate_definition"], "{}", rendered(&c));
}

#[test]
fn service_hosts_deal_in_order() {
    let p = plan(
        "global {\n project p\n autoenum {\n  superclass s\n  numhosts 6\n  service_hosts {\n   a 2\n   b\n   c all\n  }\n }\n}\nsuperclass s {\n}\n",
    );
    let got: Vec<_> = p.hosts.iter().map(|h| h.service_host.clone().unwrap()).collect();
    assert_eq!(got, ["a", "a", "b", "c", "c", "c"]);
}

#[test]
fn derived_broadcast_and_switch_bridges() {
    let p = plan("global {\n project verylongprojectname\n}\nswitch lan {\n}\nhost a {\n network eth0 {\n  switch lan\n  address 10.0.3.7\n  netmask /22\n }\n}\n");
    assert_eq!(p.hosts[0].interfaces[0].broadcast.as_deref(), Some("10.0.3.255"));
    assert_eq!(p.switches[0].bridge, "lan.verylongpro");
}

#[test]
fn hosts_keep_definition_order_with_plugin_hosts_where_global_stands() {
    let p = plan(
        "host first {\n}\nglobal {\n project p\n autoenum {\n  superclass s\n  numhosts 2\n }\n}\nsuperclass s {\n}\nhost last {\n}\n",
    );
    let names: Vec<_> = p.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["first", "node1", "node2", "last"]);
}

#[test]
fn a_variable_in_an_unused_superclass_is_still_checked() {
    let c = compile_mem(&[("p.mln", "global {\n project p\n}\nsuperclass s {\n memory $[nope]M\n}\n")]);
    assert_eq!(codes(&c), ["mln::variable::undefined"]);
}

#[test]
fn includes_and_files_stay_under_the_project_directory() {
    let files = [
        ("proj/main.mln", "global {\n project p\n}\n#include ../secret.txt\n#include lib/../../secret.txt\nhost a {\n files {\n  ../secret.txt /x\n }\n kernel ../vmlinuz\n}\n"),
        ("secret.txt", "SECRET"),
        ("vmlinuz", ""),
    ];
    let c = compile_mem(&files);
    assert_eq!(codes(&c), ["mln::path::outside"; 4], "{}", rendered(&c));
    assert!(!rendered(&c).contains("SECRET\n"));
    // Allowed by the user: read, and the kernel is relative to the project
    // file, as `files` sources are.
    let mut fs = mln::source::MemoryFs::default();
    for (p, t) in files {
        fs = fs.with(p, t);
    }
    let options = mln::CompileOptions { allowed_roots: vec![".".into()], keep_resolved: true };
    let c = mln::compile_with(std::path::Path::new("proj/main.mln"), &fs, mln::plugin::Registry::new(vec![]), &options);
    assert!(!codes(&c).contains(&"mln::path::outside"), "{}", rendered(&c));
    assert!(codes(&c).contains(&"mln::unknown_keyword"), "the secret was read as project text: {}", rendered(&c));
    assert_eq!(c.plan.hosts[0].kernel.as_deref(), Some("vmlinuz"));
}

#[test]
fn included_files_over_the_limit_are_refused_at_the_include() {
    let big = "# padding\n".repeat(mln::syntax::MAX_FILE_BYTES / 10 + 1);
    let c = compile_mem(&[("p.mln", "global {\n project p\n}\n#include big.mln\n"), ("big.mln", &big)]);
    assert_eq!(codes(&c), ["mln::syntax::too_large"]);
    assert_eq!(c.sources.location(c.diags.sorted()[0].primary_span().unwrap()), "p.mln:4:10");
}

/// MLN's manual has keywords for User-Mode Linux guests (who runs them,
/// with sudo or not, a host-side TUN device): a file that has them plans,
/// with a warning where each is written.
#[test]
fn user_mode_linux_keywords_are_read_and_said_to_have_no_effect() {
    let c = compile_mem(&[(
        "/p/own.mln",
        "global {\n    project own\n}\nswitch lan {\n    owner alice\n    sudo 1\n}\nsuperclass base {\n    group users\n}\n\
         host a {\n    superclass base\n    owner alice\n    sudo 1\n    network eth0 {\n        switch lan\n        tun_iface tap0\n        tun_address 10.0.0.254\n    }\n}\n",
    )]);
    assert!(c.ok(), "{}", rendered(&c));
    assert_eq!(codes(&c), ["mln::uml::no_effect"; 7], "{}", rendered(&c));
    assert_eq!(c.plan.hosts.len(), 1);
}

/// Startup lines as real project files have them (a Docker install and an
/// Apache configuration), read as MLN 1.0.8.8 reads them: the expected
/// lines are what `mln build -s` of the original printed for this file.
#[test]
fn open_quotes_and_backslashes_read_as_mln_reads_them() {
    let text = r#"global {
    project docker
}
host d {
    startup {
        curl -fsSL https://download.docker.com/linux/ubuntu/gpg | apt-key add -
        add-apt-repository \
           "deb [arch=amd64] https://download.docker.com/linux/ubuntu \
           $(lsb_release -cs) \
           stable"
        apt-get update; apt-get install -y docker-ce
        printf "%s\n" "a\"b" ready
        echo "Alias /svn /var/www/svn
        </Location>" | tee -a /etc/apache2/sites-available/svn.conf
        echo x\;y
        echo a \
        b c
    }
}
"#;
    let c = compile_mem(&[("p.mln", text)]);
    assert!(c.ok(), "{}", rendered(&c));
    assert_eq!(
        c.plan.hosts[0].startup,
        [
            "curl -fsSL https://download.docker.com/linux/ubuntu/gpg | apt-key add -",
            r#"add-apt-repository "deb [arch=amd64] https://download.docker.com/linux/ubuntu $(lsb_release -cs) stable""#,
            "apt-get update",
            "apt-get install -y docker-ce",
            // Closed quotes are mln's: their escapes stay for the shell
            // (MLN would make this `printf "%sn" "a"b" ready`).
            r#"printf "%s\n" "a\"b" ready"#,
            r#"echo "Alias /svn /var/www/svn"#,
            r#"</Location>" | tee -a /etc/apache2/sites-available/svn.conf"#,
            "echo x;y",
            "echo a b c",
        ]
    );
    // Each quote that does not close is a warning at that quote.
    assert_eq!(codes(&c), ["mln::syntax::open_quote"; 4]);
    let lines: Vec<_> = c.diags.sorted().iter().map(|d| c.sources.location(d.primary_span().unwrap())).collect();
    assert_eq!(lines, ["p.mln:8:12", "p.mln:10:18", "p.mln:13:14", "p.mln:14:20"]);
}

#[test]
fn an_open_quote_is_text_in_every_block_and_a_closed_one_still_quotes() {
    let c = compile_mem(&[(
        "p.mln",
        "global {\n project p\n $v = \"x y\n}\nswitch lan {\n}\nhost a {\n description \"my $v\n network eth0 {\n  switch lan\n }\n}\nhost b {\n description \"a # b; c\" \\\"d\n network eth0 {\n  switch lan\n }\n}\n",
    )]);
    assert!(c.ok(), "{}", rendered(&c));
    assert_eq!(c.plan.hosts[0].description.as_deref(), Some("\"my \"x y"));
    // A closed quote keeps `#` and `;`; `\"` is a quote taken literally
    // without a warning.
    assert_eq!(c.plan.hosts[1].description.as_deref(), Some("a # b; c \"d"));
    assert_eq!(codes(&c), ["mln::syntax::open_quote"; 2]);
}

#[test]
fn a_backslash_takes_the_next_character_literally() {
    let p = plan(
        "global {\n project p\n}\nhost a {\n description x\\;y \\{z\\} \\#w\n startup {\n  printf a\\\\b\n  echo one \\\n  two # a comment\n  echo \\$HOME\n }\n}\nhost \\\n b {\n}\n",
    );
    assert_eq!(p.hosts[0].description.as_deref(), Some("x;y {z} #w"));
    assert_eq!(p.hosts[0].startup, ["printf a\\b", "echo one two", "echo $HOME"]);
    // A continued line may open a block.
    assert_eq!(p.hosts[1].name, "b");
}

#[test]
fn a_compilation_keeping_no_resolved_hosts_reports_the_same_problems_at_the_same_places() {
    let text = "global {\n project p\n}\nswitch lan {\n}\nsuperclass s {\n memory 256M\n network eth0 {\n  netmask 255.255.255.0\n }\n}\n\
                superclass spare {\n}\n\
                host a {\n superclass s\n network eth0 {\n  switch lan\n  address 10.0.0.1\n  mac 52:54:00:00:00:01\n }\n}\n\
                host b {\n superclass s\n network eth0 {\n  switch lna\n  address 10.0.0.1\n  mac 52:54:00:00:00:01\n }\n}\n";
    let fs = mln::source::MemoryFs::default().with("p.mln", text);
    let run = |keep_resolved| {
        let options = mln::CompileOptions { allowed_roots: vec![], keep_resolved };
        mln::compile_with(std::path::Path::new("p.mln"), &fs, mln::plugin::Registry::new(vec![]), &options)
    };
    let (whole, lean) = (run(true), run(false));
    for code in ["mln::network::duplicate_address", "mln::network::duplicate_mac", "mln::network::unknown_switch"] {
        assert!(codes(&whole).contains(&code), "{code}: {}", rendered(&whole));
    }
    assert_eq!(rendered(&lean), rendered(&whole));
    assert!(lean.resolved.iter().all(|r| !r.section.has("memory")), "the lean compilation kept whole hosts");
    assert!(whole.resolved.iter().all(|r| r.section.has("memory")));
}

/// Written host blocks are lowered on several threads, in batches, then
/// named and checked in order: thousands of hosts each read as written, the
/// diagnostics in the order of the file, a duplicate refused once.
#[test]
fn many_written_hosts_read_in_order() {
    let mut text = String::from("global {\n project p\n}\nsuperclass a {\n memory 64M\n}\nsuperclass b {\n memory 128M\n}\n");
    for i in 0..5000 {
        let class = if i % 3 == 0 { "b" } else { "a" };
        let extra = if i % 1999 == 7 { "\n memroy 1M" } else { "" };
        text += &format!("host h{i} {{\n superclass {class}{extra}\n vcpus {}\n}}\n", i % 4 + 1);
    }
    text += "host h42 {\n vcpus 2\n}\n";
    let c = compile_mem(&[("p.mln", &text)]);
    assert_eq!(codes(&c), ["mln::unknown_keyword", "mln::unknown_keyword", "mln::unknown_keyword", "mln::duplicate_definition"], "{}", rendered(&c));
    let places: Vec<String> = c.diags.sorted().iter().map(|d| c.sources.location(d.primary_span().unwrap())).collect();
    let line = |host: usize| 10 + 4 * host + host.saturating_sub(7).div_ceil(1999).min(3);
    assert_eq!(places[..3], [format!("p.mln:{}:2", line(7) + 2), format!("p.mln:{}:2", line(2006) + 2), format!("p.mln:{}:2", line(4005) + 2)]);
    assert_eq!(c.plan.hosts.len(), 5000);
    for (i, h) in c.plan.hosts.iter().enumerate() {
        assert_eq!(h.name, format!("h{i}"));
        assert_eq!((h.memory_mib, h.vcpus), (if i % 3 == 0 { 128 } else { 64 }, (i % 4 + 1) as u32), "h{i}");
    }
}
