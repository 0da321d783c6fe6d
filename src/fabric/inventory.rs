//! What the fabric commands ask of many service hosts at once: their
//! inventory (`mln fabric status`) and a template push.

use super::config::{Fabric, Server};
use super::FabricError;
use super::proto::{Info, Request};
use super::push::push_entry;
use super::remote::{attach, fan_out, Agent};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Ctx<'a> {
    pub fabric: &'a Fabric,
    /// The local templates directory (what gets pushed).
    pub templates: PathBuf,
    /// Where checksums of templates are cached.
    pub cache: PathBuf,
    pub rt: &'a tokio::runtime::Runtime,
}

/// `mln fabric status`: every service host, reachable or not, with what
/// its agent reports.
pub fn fabric_status(ctx: &Ctx, servers: &[Server]) -> Vec<(String, Result<Info, FabricError>)> {
    let answers = ctx.rt.block_on(fan_out(servers, ctx.fabric.fanout, None, |s| async move {
        let a = attach(&s).await?;
        a.call_as::<Info>(&Request::Info, &|_| {}).await
    }));
    servers.iter().map(|s| s.name.clone()).zip(answers).collect()
}

/// The template push of `mln template push`.
pub fn push(ctx: &Ctx, servers: &[Server], entry: &str) -> Vec<(String, Result<String, FabricError>)> {
    let templates = ctx.templates.clone();
    let cache = ctx.cache.clone();
    let entry = match crate::backend::template::find(&templates, entry) {
        Ok(t) => t.name,
        Err(e) => {
            let e = FabricError::Local(e.to_string());
            return servers.iter().map(|s| (s.name.clone(), Err(e.clone()))).collect();
        }
    };
    let fanout = ctx.fabric.fanout;
    let servers = servers.to_vec();
    ctx.rt.block_on(async move {
        let agents: Vec<Result<Arc<Agent>, FabricError>> = fan_out(&servers, fanout, None, |s| async move { attach(&s).await.map(Arc::new) }).await;
        let live: Vec<Arc<Agent>> = agents.iter().filter_map(|a| a.as_ref().ok().cloned()).collect();
        let mut pushed = push_entry(&live, &templates, &cache, &entry).await.into_iter();
        servers
            .iter()
            .zip(agents)
            .map(|(s, a)| match a {
                Ok(_) => pushed.next().unwrap_or_else(|| (s.name.clone(), Err(FabricError::Protocol("no answer".into())))),
                Err(e) => (s.name.clone(), Err(e)),
            })
            .collect()
    })
}
