//! The pipeline: source text → syntax tree → plugin expansion → resolution
//! → typed plan → plugin configuration. Every stage reports into one
//! [`Diagnostics`] and goes on, so a run shows every problem at once.

use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::{self, Plan};
use crate::plugin::{self, ConfigureCtx, ExpandCtx, Plugin, PluginBlock, Registry};
use crate::resolve::{ResolvedHost, Resolver};
use crate::schema::Kind;
use crate::source::{FileSystem, Roots, SourceMap};
use crate::syntax;
use crate::definitions::{self, Item, Definitions};
use std::path::{Path, PathBuf};

pub struct Compilation {
    pub sources: SourceMap,
    pub diags: Diagnostics,
    pub tree: Definitions,
    /// Whole with [`CompileOptions::keep_resolved`]; else pruned to what
    /// plugins read when a plugin has host keywords, else empty.
    pub resolved: Vec<ResolvedHost>,
    /// Present even with errors: what could be planned. Check
    /// `diags.has_errors()` before acting on it.
    pub plan: Plan,
}

impl Compilation {
    pub fn ok(&self) -> bool {
        !self.diags.has_errors()
    }
    /// A host and its resolved form; None also when the resolved forms
    /// were not kept ([`CompileOptions::keep_resolved`]).
    pub fn host(&self, name: &str) -> Option<(&plan::Host, &ResolvedHost)> {
        let i = self.plan.hosts.iter().position(|h| h.name == name)?;
        Some((&self.plan.hosts[i], self.resolved.get(i)?))
    }

    /// Where host `name`'s top-level `key` is written (or inherited from):
    /// from the kept resolved form, else by resolving that host again.
    pub fn span_of(&self, name: &str, key: &str) -> Option<crate::source::Span> {
        let i = self.plan.hosts.iter().position(|h| h.name == name)?;
        if let Some(r) = self.resolved.get(i).filter(|r| r.name == name && r.section.has(key)) {
            return r.section.value(key).map(|v| v.origin.span);
        }
        let id = *self.tree.hosts.get(i)?;
        let mut quiet = Diagnostics::default();
        let r = Resolver::new(&self.tree, &mut quiet).host(id, &mut quiet);
        r.section.value(key).map(|v| v.origin.span)
    }
}

/// What the person running mln decides, as opposed to the project file.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Directories besides the project file's own from which the project
    /// may read files (`#include`, `files` sources, `kernel`, `ramdisk`):
    /// the CLI's `--allow-path DIR`.
    pub allowed_roots: Vec<PathBuf>,
    /// Keep every host's whole resolved form ([`Compilation::resolved`]),
    /// for `explain` and `parse`. Without it each keeps only what the
    /// checks and plugins read, which is most of the memory saved on large
    /// projects.
    pub keep_resolved: bool,
}

/// [`compile_with`] the default options: a project reads files only under
/// its own directory.
pub fn compile(path: &Path, fs: &dyn FileSystem, registry: Registry) -> Compilation {
    compile_with(path, fs, registry, &CompileOptions { keep_resolved: true, ..CompileOptions::default() })
}

pub fn compile_with(path: &Path, fs: &dyn FileSystem, mut registry: Registry, options: &CompileOptions) -> Compilation {
    let mut sources = SourceMap::default();
    let mut diags = Diagnostics::default();
    let roots = Roots::new(fs, path, &options.allowed_roots);
    let loaded = syntax::load(path, fs, &roots, &mut sources, &mut diags);
    let mut tree = definitions::build(&loaded, &mut registry, &mut diags);
    let has_root = loaded.root.is_some();
    // The tree holds what later stages need; the syntax tree can go.
    drop(loaded);
    crate::memory::return_freed();
    // A file refused whole (too deep, unparsable) has no global to look in.
    let refused = ["too_deep", "unparsable", "too_large"].iter().any(|c| diags.has_code(&format!("mln::syntax::{c}")));
    if has_root && !refused && tree.global().section.value("project").is_none() {
        let g = tree.global();
        let mut d = Diagnostic::error("mln::missing_project", "the project has no name")
            .help("add `project NAME` to the `global { }` block");
        if !g.section.span.is_empty() {
            d = d.label(g.section.span, "no `project` in this block");
        }
        diags.push(d);
    }

    let plugins: Vec<&dyn Plugin> = registry.used().collect();
    for p in &plugins {
        let blocks = {
            let r = Resolver::new(&tree, &mut diags);
            global_blocks(&r, p.name(), &mut diags)
        };
        if !blocks.is_empty() {
            p.expand(&mut ExpandCtx { tree: &mut tree, blocks, diags: &mut diags });
        }
    }
    let resolver = Resolver::new(&tree, &mut diags);
    resolver.unused_variables(&mut diags);
    // Superclasses are resolved too, as if they were hosts, so a bad
    // reference is reported even where no host inherits it yet.
    for id in tree.ids(crate::definitions::DefKind::Superclass) {
        resolver.host(id, &mut diags);
    }
    let project_dir = path.parent().unwrap_or(Path::new(""));
    let keep = if options.keep_resolved {
        plan::Keep::Whole
    } else if plugin_host_keywords(&tree.core) {
        plan::Keep::PluginSettings
    } else {
        plan::Keep::Nothing
    };
    let (mut plan, resolved) = plan::build(&resolver, &tree.hosts, keep, project_dir, fs, &roots, &mut diags);

    let global = resolver.plain(&tree.global().section, &tree.core.global, &mut Diagnostics::default());
    let switches: Vec<(String, crate::resolve::RSection)> = tree
        .ids(crate::definitions::DefKind::Switch)
        .map(|id| (tree.def(id).name.clone(), resolver.plain(&tree.def(id).section, &tree.core.switch, &mut Diagnostics::default())))
        .collect();
    for p in &plugins {
        let blocks = global_blocks(&resolver, p.name(), &mut diags);
        let core = &tree.core;
        let mut ctx = ConfigureCtx {
            plan: &plan,
            blocks,
            global: plugin::settings(&global, &core.global, core, p.name()),
            hosts: resolved
                .iter()
                .map(|h| (h.name.clone(), plugin::settings(&h.section, &core.host, core, p.name())))
                .filter(|(_, s)| !s.entries.is_empty())
                .collect(),
            switches: switches
                .iter()
                .map(|(n, s)| (n.clone(), plugin::settings(s, &core.switch, core, p.name())))
                .filter(|(_, s)| !s.entries.is_empty())
                .collect(),
            diags: &mut diags,
        };
        if ctx.is_empty() {
            continue;
        }
        if p.wants_type_checks() {
            // Every place the plugin's keywords stand, checked before the
            // plugin is asked: it is not called with values that do not fit.
            let mut ok = plugin::check_values(p.name(), &ctx.global, &core.global, ctx.diags);
            for s in ctx.hosts.values() {
                ok &= plugin::check_values(p.name(), s, &core.host, ctx.diags);
            }
            for s in ctx.switches.values() {
                ok &= plugin::check_values(p.name(), s, &core.switch, ctx.diags);
            }
            if !ok {
                continue;
            }
        }
        let first_span = ctx.blocks.first().map(|b| b.span);
        let out = p.configure(&mut ctx);
        for (host, output) in out {
            match plan.hosts.iter_mut().find(|h| h.name == host) {
                Some(h) => {
                    h.plugins.insert(p.name().to_string(), output);
                }
                None => {
                    let mut d = Diagnostic::error(
                        "mln::plugin::unknown_host",
                        format!("plugin `{}` configured host `{host}`, which is not in the project", p.name()),
                    );
                    if let Some(s) = first_span {
                        d = d.label(s, "");
                    }
                    diags.push(d);
                }
            }
        }
    }
    drop(plugins);
    Compilation { sources, diags, tree, resolved, plan }
}

/// Whether a plugin declared keywords for hosts (or their interfaces): its
/// configure hook then reads them from the resolved hosts.
fn plugin_host_keywords(core: &crate::schema::CoreSchemas) -> bool {
    core.host.keywords.values().chain(core.network().keywords.values()).any(|k| k.plugin.is_some())
}

/// A plugin's blocks in `global`, resolved in global scope.
fn global_blocks(r: &Resolver, plugin: &str, diags: &mut Diagnostics) -> Vec<PluginBlock> {
    let tree = r.tree;
    let mut out = Vec::new();
    for (key, kw) in &tree.core.global.keywords {
        if kw.plugin.as_deref() != Some(plugin) {
            continue;
        }
        let schema = match &kw.kind {
            Kind::Block(s) | Kind::Named { schema: s, .. } => s.clone(),
            _ => continue,
        };
        match tree.global().section.entries.get(key) {
            Some(Item::Block(sec)) => {
                out.push(PluginBlock { key: key.clone(), label: String::new(), span: sec.span, section: r.plain(sec, &schema, diags) })
            }
            Some(Item::Named(map)) => {
                for (label, sec) in map.iter() {
                    out.push(PluginBlock { key: key.clone(), label: label.clone(), span: sec.span, section: r.plain(sec, &schema, diags) })
                }
            }
            _ => {}
        }
    }
    out
}
