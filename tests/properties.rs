//! Properties over generated input: `fmt` is idempotent and never changes
//! the plan; no input makes the compiler panic.

mod common;
use common::*;
use proptest::prelude::*;

const HASH: &str = "$6$saltsalt$o1sgYDV8VZcOve24efNWklRNXcLE3g0hTn.yk/35V.zlJ/bsjDWvvF9ir1i.OPVFTXvpnFTVBuiD2wZ3n9RnQ/";

/// A random but valid project, written with random layout choices.
#[derive(Debug, Clone)]
struct Gen {
    supers: Vec<(Option<usize>, u32, bool)>,
    hosts: Vec<(Option<usize>, Option<u32>, u8, bool)>,
    layout: Vec<u8>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        prop::collection::vec((prop::option::of(0usize..4), 1u32..512, any::<bool>()), 1..4),
        prop::collection::vec((prop::option::of(0usize..4), prop::option::of(1u32..512), 1u8..250, any::<bool>()), 1..6),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(|(supers, hosts, layout)| Gen { supers, hosts, layout })
}

/// Writes the project: `layout` bytes pick separators, spacing and comments.
fn write(g: &Gen) -> String {
    let mut k = 0;
    let mut pick = |n: u8| {
        k += 1;
        g.layout[k % g.layout.len()] % n
    };
    let sep = |pick: &mut dyn FnMut(u8) -> u8| match pick(4) {
        0 => "; ".to_string(),
        1 => "\n\n".to_string(),
        2 => "   # note\n".to_string(),
        _ => "\n".to_string(),
    };
    let mut s = String::from("# generated\nglobal {");
    s += &sep(&mut pick);
    s += "project gen";
    s += &sep(&mut pick);
    s += "$gw = 10.9.0.1";
    s += &sep(&mut pick);
    s += "}\n";
    for (i, (parent, mem, users)) in g.supers.iter().enumerate() {
        s += &format!("superclass s{i}{}", if pick(2) == 0 { "{" } else { " {\n" });
        // Parents only point backwards: no cycles.
        if let Some(p) = parent.filter(|p| *p < i) {
            s += &format!("superclass s{p}");
            s += &sep(&mut pick);
        }
        s += &format!("$m{i} = {mem}");
        s += &sep(&mut pick);
        s += &format!("memory   $[m{i}]M");
        s += &sep(&mut pick);
        if *users {
            s += &format!("users {{\n  u{i} {HASH}\n}}");
            s += &sep(&mut pick);
        }
        s += "network eth0 {\n netmask 255.255.255.0\n gateway $gw }\n";
        s += "}\n";
    }
    for (i, (parent, mem, octet, dhcp)) in g.hosts.iter().enumerate() {
        s += &format!("host h{i} {{");
        s += &sep(&mut pick);
        if let Some(p) = parent.filter(|p| *p < g.supers.len()) {
            s += &format!("superclass s{p}");
            s += &sep(&mut pick);
        }
        if let Some(m) = mem {
            s += &format!("memory {m}M");
            s += &sep(&mut pick);
        }
        let address = if *dhcp { "dhcp".to_string() } else { format!("10.9.{}.{}", i, 2 + (*octet as u32 % 250)) };
        s += &format!("network eth0 {{ address {address}; netmask 255.255.0.0 }}");
        s += &sep(&mut pick);
        s += "description \"host ; with # specials\"";
        s += &sep(&mut pick);
        s += "}";
        s += if pick(2) == 0 { " # end\n" } else { "\n" };
    }
    s
}

fn fmt_text(text: &str) -> String {
    let mut d = mln::diag::Diagnostics::default();
    let e = mln::syntax::parse_file(mln::source::FileId(0), text, &mut d);
    assert!(!d.has_errors(), "generated text has syntax errors:\n{text}");
    mln::fmt::format(&e, text)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn fmt_is_idempotent_and_keeps_the_plan(g in gen()) {
        let text = write(&g);
        let once = fmt_text(&text);
        let twice = fmt_text(&once);
        prop_assert_eq!(&once, &twice);
        let a = compile_mem(&[("p.mln", &text)]);
        let b = compile_mem(&[("p.mln", &once)]);
        prop_assert_eq!(codes(&a), codes(&b));
        prop_assert_eq!(a.plan, b.plan);
    }

    #[test]
    fn no_input_panics(text in "[a-z0-9 {}#;$\\[\\]\"\\\\=\n.:/_-]{0,400}") {
        let c = compile_mem(&[("p.mln", &text)]);
        let _ = rendered(&c);
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, "[{}#;$\"\\n a-z]{1,3}"), 1..8),
    ) {
        let name = ["mpi_cluster", "inheritance", "guest_setup", "variables"][which];
        let mut text = std::fs::read_to_string(root().join(format!("examples/{name}.mln"))).unwrap();
        for (at, op, s) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) { i -= 1; }
            match op {
                0 => text.insert_str(i, &s),
                1 => { let end = (i + s.len()).min(text.len()); if text.is_char_boundary(end) { text.replace_range(i..end, ""); } }
                _ => { let end = (i + s.len()).min(text.len()); if text.is_char_boundary(end) { text.replace_range(i..end, &s); } }
            }
        }
        let servers = std::fs::read_to_string(root().join("examples/servers.txt")).unwrap();
        let c = compile_mem(&[("examples/p.mln", &text), ("examples/servers.txt", &servers)]);
        let _ = rendered(&c);
    }
}

/// A piece of a name: plain words mostly (about one project in six then
/// compiles), and everything that could turn a name into a path elsewhere
/// or into something else on a terminal.
fn name_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        24 => "[a-zA-Z0-9]{1,6}",
        1 => Just("/".to_string()),
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(" ".to_string()),
        1 => Just("-".to_string()),
        1 => Just("_".to_string()),
        1 => Just("\"".to_string()),
        1 => Just("\\".to_string()),
        1 => Just("é".to_string()),
        1 => Just("$".to_string()),
        1 => "[\\x00-\\x1f\\x7f-\\x9f]",
        1 => "[a-z]{60,70}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(name_piece(), 1..5).prop_map(|v| v.concat())
}

/// `s` as a quoted word, so that every character reaches the compiler.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever names a project file gives, a project that compiles has
    /// names that are valid, and paths made from them stay in their root.
    #[test]
    fn accepted_names_make_paths_inside_their_root(project in name(), hosts in prop::collection::vec(name(), 1..3)) {
        let mut text = format!("global {{\n    project {}\n}}\n", quoted(&project));
        for h in &hosts {
            text += &format!("host {} {{\n}}\n", quoted(h));
        }
        let c = compile_mem(&[("p.mln", &text)]);
        if c.ok() {
            let root = tempfile::tempdir().unwrap();
            let p = &c.plan.project;
            prop_assert!(mln::name::check(mln::name::NameKind::Project, p).is_ok(), "{p:?}");
            for h in &c.plan.hosts {
                prop_assert!(mln::name::check(mln::name::NameKind::Host, &h.name).is_ok(), "{:?}", h.name);
                let path = mln::name::inside(root.path(), &[p, &h.name]);
                prop_assert!(path.as_ref().is_ok_and(|x| x.starts_with(root.path())), "{p:?} {:?}: {path:?}", h.name);
            }
        }
    }
}

#[test]
fn valid_names_are_accepted_and_bad_ones_refused() {
    let text = |project: &str, host: &str| format!("global {{\n    project {}\n}}\nhost {} {{\n}}\n", quoted(project), quoted(host));
    let c = compile_mem(&[("p.mln", &text("lab-1.x", "node_01"))]);
    assert!(c.ok(), "{}", rendered(&c));
    for (project, host) in [("/tmp/x/decoy", "a"), ("..", "a"), ("p", ".."), ("p", "a/b"), ("p", "a\u{1b}[2J"), ("p", "a\u{7}"), ("p", &"a".repeat(64))] {
        let c = compile_mem(&[("p.mln", &text(project, host))]);
        assert!(codes(&c).contains(&"mln::name::invalid"), "{project:?} {host:?}: {}", rendered(&c));
    }
}

#[test]
fn files_over_the_limit_are_refused_whole() {
    let big = "# padding\n".repeat(mln::syntax::MAX_FILE_BYTES / 10 + 1);
    let c = compile_mem(&[("p.mln", &big)]);
    assert_eq!(codes(&c), ["mln::syntax::too_large"]);
}

#[test]
fn hostile_inputs_finish() {
    let cases = [
        "{".repeat(63) + &"}".repeat(63),
        "{".repeat(200_000),
        "\"".repeat(100_000),
        "$[".repeat(50_000),
        format!("host a {{\n{}\n}}", "x ".repeat(100_000)),
        "a\n".repeat(100_000),
        format!("global {{\n project p\n $a = {}\n}}", (0..2000).map(|i| format!("$v{i}")).collect::<String>()),
    ];
    for text in &cases {
        let c = compile_mem(&[("p.mln", text)]);
        // Every case is wrong somehow (unknown blocks, missing project...).
        assert!(!c.diags.is_empty());
    }
}
