//! `cluster { head HOST }`: an MPI-ready cluster, the batch system
//! (torque) and NFS homes.
//!
//! Every host gets `/etc/hosts` naming every host with an address, an ssh
//! client configuration for logging into the others (with the cluster key
//! the seed gives every account: crate::guest) and
//! `/var/spool/torque/server_name`; the head gets the MPI hostfile
//! `/etc/mln/hostfile` (slots = vCPUs), the torque `nodes` file and
//! `/etc/exports` (`/home` to every other node); the others get an
//! automounter map mounting `/home` from the head. The files are
//! handlebars templates in `plugins/cluster/templates/`.

use crate::diag::Diagnostic;
use crate::plan::{GeneratedFile, Host, PluginOutput};
use crate::plugin::{ConfigureCtx, Context, Declaration, Plugin};
use crate::schema::{suggest, Keyword, Kind, Schema, Ty};
use handlebars::Handlebars;
use indexmap::IndexMap;
use serde_json::json;
use std::sync::Arc;

pub struct Cluster;

const TEMPLATES: [(&str, &str); 8] = [
    ("hosts", include_str!("templates/hosts.hbs")),
    ("hostfile", include_str!("templates/hostfile.hbs")),
    ("ssh_config", include_str!("templates/ssh_config.hbs")),
    ("server_name", include_str!("templates/server_name.hbs")),
    ("nodes", include_str!("templates/nodes.hbs")),
    ("exports", include_str!("templates/exports.hbs")),
    ("auto.master", include_str!("templates/auto.master.hbs")),
    ("auto.home", include_str!("templates/auto.home.hbs")),
];

impl Plugin for Cluster {
    fn name(&self) -> &str {
        "cluster"
    }

    fn declaration(&self) -> Declaration {
        let schema = Schema::new("cluster").with("head", Kind::Value(Ty::Name));
        let kw = Keyword { name: "cluster", kind: Kind::Block(Arc::new(schema)), alias_of: None, plugin: Some("cluster".into()) };
        Declaration { blocks: vec![(Context::Global, kw)] }
    }

    fn configure(&self, ctx: &mut ConfigureCtx) -> IndexMap<String, PluginOutput> {
        let mut out = IndexMap::new();
        let Some(block) = ctx.blocks.first() else { return out };
        let Some(head_v) = block.section.value("head") else {
            ctx.diags.push(
                Diagnostic::error("mln::cluster::missing_head", "cluster needs `head HOST`")
                    .label(block.span, "in this block")
                    .help("name the host that runs the batch server and exports /home"),
            );
            return out;
        };
        let head_name = head_v.text.as_str();
        let Some(head) = ctx.plan.hosts.iter().find(|h| h.name == head_name) else {
            let mut d = Diagnostic::error("mln::cluster::unknown_head", format!("head `{head_name}` is not a host of the project"))
                .label(head_v.origin.span, "");
            if let Some(m) = suggest(head_name, ctx.plan.hosts.iter().map(|h| h.name.as_str())) {
                d = d.help(format!("did you mean `{m}`?"));
            }
            ctx.diags.push(d);
            return out;
        };
        let mut hb = Handlebars::new();
        hb.register_escape_fn(handlebars::no_escape);
        hb.set_strict_mode(true);
        for (name, t) in TEMPLATES {
            hb.register_template_string(name, t).expect("built-in templates parse");
        }
        let entry = |h: &Host| {
            let address = h.interfaces.iter().find_map(|i| i.address.clone());
            json!({ "name": h.name, "vcpus": h.vcpus, "target": address.clone().unwrap_or_else(|| h.name.clone()), "address": address })
        };
        let data = json!({
            "head": entry(head),
            "hosts": ctx.plan.hosts.iter().map(entry).collect::<Vec<_>>(),
            "nodes": ctx.plan.hosts.iter().filter(|h| h.name != head.name).map(entry).collect::<Vec<_>>(),
        });
        let render = |name: &str| hb.render(name, &data).expect("templates render with the data they are given");
        let file = |path: &str, template: &str| GeneratedFile { path: path.into(), content: render(template), mode: Some("0644".into()) };
        for h in &ctx.plan.hosts {
            let mut o = PluginOutput { files: vec![file("/var/spool/torque/server_name", "server_name")], startup: vec![] };
            if h.name == head.name {
                o.files.push(file("/var/spool/torque/server_priv/nodes", "nodes"));
                if ctx.plan.hosts.len() > 1 {
                    o.files.push(file("/etc/exports", "exports"));
                    o.startup.push("exportfs -ra".into());
                }
            } else {
                o.files.push(file("/etc/auto.master", "auto.master"));
                o.files.push(file("/etc/auto.home", "auto.home"));
            }
            o.files.push(file("/etc/hosts", "hosts"));
            o.files.push(file("/etc/ssh/ssh_config.d/mln-cluster.conf", "ssh_config"));
            if h.name == head.name {
                o.files.push(file("/etc/mln/hostfile", "hostfile"));
            }
            out.insert(h.name.clone(), o);
        }
        out
    }
}
