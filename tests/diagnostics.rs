//! Every error kind, rendered as the user sees it, pinned by snapshots.
//! Each file in tests/diagnostics/ is a case.

mod common;
use common::*;

#[test]
fn rendered_diagnostics() {
    insta::glob!("diagnostics/*.mln", |path| {
        let rel = path.strip_prefix(root()).unwrap();
        let c = compile_disk(rel);
        assert!(c.diags.has_errors() || !c.diags.is_empty(), "{} reports nothing", rel.display());
        insta::assert_snapshot!(rendered(&c));
    });
}

/// The codes each case must produce: the snapshots pin the wording, this
/// pins that every problem in a file is found in one run.
#[test]
fn every_problem_in_one_run() {
    let cases: &[(&str, &[&str])] = &[
        ("syntax_errors", &["mln::syntax::open_quote", "mln::syntax::stray_close", "mln::syntax::unclosed_block"]),
        ("unknown_keyword", &["mln::unknown_keyword"; 3]),
        ("wrong_block", &["mln::misplaced_keyword"; 5]),
        (
            "bad_values",
            &[
                "mln::value::size",
                "mln::value::size",
                "mln::value::number",
                "mln::value::choice",
                "mln::value::ip",
                "mln::value::netmask",
                "mln::value::mac",
                "mln::network::gateway_outside",
                "mln::network::broadcast",
            ],
        ),
        ("duplicates", &["mln::duplicate_definition", "mln::network::duplicate_address", "mln::network::duplicate_mac"]),
        ("variables", &["mln::variable::unused", "mln::variable::cycle", "mln::variable::undefined", "mln::variable::undefined"]),
        ("inheritance", &["mln::superclass::cycle", "mln::superclass::unknown", "mln::superclass::unknown"]),
        ("include_missing", &["mln::include::missing"]),
        ("include_cycle", &["mln::include::cycle"]),
        ("missing_project", &["mln::missing_project"]),
        (
            "passwords",
            &[
                "mln::value::plain_password",
                "mln::value::plain_password",
                "mln::password::malformed",
                "mln::password::des",
                "mln::password::malformed",
                "mln::password::malformed",
                "mln::password::des",
            ],
        ),
        ("passwords_des", &["mln::password::weak", "mln::password::weak", "mln::value::plain_password"]),
        (
            "autoenum_errors",
            &["mln::autoenum::address_overflow", "mln::autoenum::too_few_slots", "mln::autoenum::missing", "mln::superclass::unknown"],
        ),
        ("kinds", &["mln::kind::uml", "mln::kind::conflict"]),
        (
            "baremetal",
            &[
                "mln::autoenum::too_few_macs",
                "mln::baremetal::boot_without_disk",
                "mln::baremetal::disk",
                "mln::baremetal::duplicate_mac",
                "mln::baremetal::duplicate_mac",
                "mln::baremetal::missing_environment",
                "mln::baremetal::missing_mac",
                "mln::baremetal::missing_power",
                "mln::baremetal::not_baremetal",
                "mln::baremetal::password_inline",
                "mln::baremetal::placeholder",
                "mln::baremetal::placeholder",
                "mln::baremetal::power_settings",
                "mln::baremetal::power_settings",
                "mln::baremetal::power_settings",
                "mln::baremetal::template_quoting",
                "mln::baremetal::unknown_driver",
                "mln::baremetal::vm_keyword",
                "mln::baremetal::vm_keyword",
                "mln::baremetal::vm_keyword",
                "mln::misplaced_keyword",
                "mln::value::choice",
                "mln::value::mac",
                "mln::value::range",
                "mln::value::range",
            ],
        ),
        ("cluster_head", &["mln::cluster::unknown_head"]),
        ("switches", &["mln::network::unknown_switch"]),
        (
            "structure",
            &[
                "mln::misplaced_variable",
                "mln::unnamed_block",
                "mln::unexpected_name",
                "mln::missing_name",
                "mln::unexpected_name",
                "mln::expected_block",
                "mln::unexpected_block",
                "mln::expected_block",
                "mln::missing_name",
                "mln::misplaced_keyword",
            ],
        ),
        (
            "lines",
            &[
                "mln::variable::no_host",
                "mln::variable::builtin",
                "mln::switch::uml",
                "mln::superclass::unknown",
                "mln::superclass::several",
                "mln::superclass::variable",
                "mln::users::line",
                "mln::files::missing",
                "mln::value::mode",
                "mln::mount::line",
                "mln::network::address_outside",
            ],
        ),
        (
            "autoenum_more",
            &[
                "mln::autoenum::missing",
                "mln::autoenum::numhosts",
                "mln::autoenum::address",
                "mln::autoenum::service_hosts",
                "mln::cluster::missing_head",
            ],
        ),
        ("too_deep", &["mln::syntax::too_deep"]),
        ("names", &["mln::name::invalid"; 13]),
        ("control", &["mln::name::invalid", "mln::syntax::control_character"]),
        ("paths", &["mln::path::outside", "mln::path::outside", "mln::io::not_regular", "mln::path::outside", "mln::path::outside", "mln::path::outside"]),
        (
            "ranges",
            &[
                "mln::value::range",
                "mln::value::range",
                "mln::value::range",
                "mln::value::range",
                "mln::value::range",
                "mln::value::range",
                "mln::value::size",
                "mln::value::size",
                "mln::value::size",
                "mln::users::root_uid",
            ],
        ),
        ("unused", &["mln::switch::unused", "mln::superclass::unused", "mln::disk::size_ignored"]),
        (
            "keywords",
            &[
                "mln::term::no_effect",
                "mln::xen_extra::refused",
                "mln::value::cpuset",
                "mln::value::size",
                "mln::filepath::refused",
                "mln::value::cpuset",
                "mln::network::user_mode",
                "mln::value::range",
            ],
        ),
    ];
    for (name, want) in cases {
        let c = compile_disk(&std::path::Path::new("tests/diagnostics").join(format!("{name}.mln")));
        let mut got = codes(&c);
        let mut want = want.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}:\n{}", rendered(&c));
    }
}

#[test]
fn diagnostics_carry_file_line_and_column() {
    let c = compile_disk(std::path::Path::new("tests/diagnostics/unknown_keyword.mln"));
    let d = c.diags.sorted()[0];
    assert_eq!(c.sources.location(d.primary_span().unwrap()), "tests/diagnostics/unknown_keyword.mln:5:5");
    assert_eq!(d.help.as_deref(), Some("did you mean `memory`?"));
}
