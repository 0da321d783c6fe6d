//! The typed, validated plan built from resolved hosts.

mod baremetal;
mod checks;
pub mod json;
mod model;
mod typing;
pub mod values;

pub use model::*;
pub use baremetal::{DEFAULT_IPMI_PORT, MAX_PARTITION};
pub use typing::{DEFAULT_BOOT_ORDER, DEFAULT_MEMORY_MIB, DEFAULT_SIZE_MIB, DEFAULT_TEMPLATE};

use crate::diag::Diagnostics;
use crate::name::NameKind;
use crate::resolve::{ResolvedHost, Resolver};
use crate::schema::HOOKS;
use crate::source::{FileSystem, Roots};
use crate::definitions::{DefId, DefKind};
use indexmap::IndexMap;
use std::path::Path;

/// How much of each resolved host [`build`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Everything (`explain`, `parse`).
    Whole,
    /// What plugins' configure hooks read ([`ResolvedHost::pruned`]).
    PluginSettings,
    /// Nothing: the checks resolve again the few hosts they report.
    Nothing,
}

/// Resolves and types the hosts `ids` in one pass, each host's resolved
/// form going straight into its typed one, and checks the plan. The whole
/// resolved forms of 100,000 hosts were most of the memory planning took,
/// so only what `keep` asks for stays.
#[allow(clippy::too_many_arguments)]
pub fn build(
    resolver: &Resolver,
    ids: &[DefId],
    keep: Keep,
    project_dir: &Path,
    fs: &dyn FileSystem,
    roots: &Roots,
    diags: &mut Diagnostics,
) -> (Plan, Vec<ResolvedHost>) {
    let tree = resolver.tree;
    let project = resolver.project().to_string();
    let des_hashes = des_hashes(tree);
    // Boxed: with `Keep::Nothing` the slots are all empty, 8 bytes each.
    let (hosts, kept): (Vec<Host>, Vec<Option<Box<ResolvedHost>>>) = crate::parallel::map2(ids, diags, |id, diags| {
        let r = resolver.host(*id, diags);
        let mut h = typing::Typer { tree, project: &project, project_dir, fs, roots, des_hashes, diags }.host(&r);
        // A vector's first push makes room for four: most hosts have one
        // interface (200 bytes) and one user, and there are many hosts.
        h.interfaces.shrink_to_fit();
        h.users.shrink_to_fit();
        h.startup.shrink_to_fit();
        h.nameservers.shrink_to_fit();
        let r = match keep {
            Keep::Whole => Some(Box::new(r)),
            Keep::PluginSettings => Some(Box::new(r.pruned(&tree.core))),
            Keep::Nothing => None,
        };
        (h, r)
    });
    let all: Vec<ResolvedHost> = if keep == Keep::Nothing { Vec::new() } else { kept.into_iter().flatten().map(|r| *r).collect() };
    let origins = match keep {
        Keep::Nothing => checks::Origins::Again { resolver, ids },
        _ => checks::Origins::Kept(&all),
    };
    let switches = tree
        .ids(DefKind::Switch)
        .map(|id| {
            let def = tree.def(id);
            let s = resolver.plain(&def.section, &tree.core.switch, diags);
            for k in ["hub", "socket", "tap"] {
                if let Some(v) = s.value(k) {
                    diags.push(
                        crate::diag::Diagnostic::warning("mln::switch::uml", format!("`{k}` is for User-Mode Linux and is ignored"))
                            .label(v.origin.span, ""),
                    );
                }
            }
            for (key, kind) in [("bridge", NameKind::Interface), ("service_host", NameKind::ServiceHost)] {
                if let Some(v) = s.value(key).filter(|v| !v.is_broken()) {
                    diags.extend(crate::name::diagnose(kind, None, &v.text, v.origin.span));
                }
            }
            Switch {
                name: def.name.clone(),
                bridge: s.text("bridge").map(str::to_string).unwrap_or_else(|| default_bridge(&def.name, &project)),
                service_host: s.text("service_host").map(str::to_string),
                attach: s.text("bridge").is_some(),
                segment: None,
            }
        })
        .collect();
    let global = resolver.plain(&tree.global().section, &tree.core.global, diags);
    if let Some(v) = global.value("project").filter(|v| !v.is_broken()) {
        // At the name itself when it was written, not the whole statement.
        let span = match tree.global().section.value("project").map(|d| &d.text) {
            Some(crate::definitions::Text::Words(w)) if !w.is_empty() => w[0].span.to(w[w.len() - 1].span),
            _ => v.origin.span,
        };
        diags.extend(crate::name::diagnose(NameKind::Project, None, &v.text, span));
    }
    let mut hooks = IndexMap::new();
    for h in HOOKS {
        let lines = global.lines(h);
        if !lines.is_empty() {
            hooks.insert(h.to_string(), lines.iter().map(|l| l.text.clone()).collect());
        }
    }
    let plan = Plan { project, hosts, switches, hooks };
    checks::check(&plan, &origins, diags);
    // With errors, an "unused" superclass or switch is usually the other
    // end of a misspelt name, already reported: say it once that is fixed.
    if !diags.has_errors() {
        checks::unused(&plan, &origins, tree, diags);
    }
    (plan, all)
}

/// MLN's bridge name for a switch: `<switch>.<project>`, cut to the 15
/// characters Linux allows in an interface name.
pub fn default_bridge(switch: &str, project: &str) -> String {
    format!("{switch}.{project}").chars().take(15).collect()
}

/// Whether the project opted in to DES password hashes (`des_hashes` in
/// `global`): accepted then, with a warning each.
pub fn des_hashes(tree: &crate::definitions::Definitions) -> bool {
    tree.global().section.value("des_hashes").is_some()
}
