//! The service hosts of a project's guests, for `mln ssh` and `mln exec`:
//! each reached once, its agent reading the consoles there (host keys),
//! and the options the proxy command needs to find the same fabric
//! configuration (book/src/login.md, "Guests on a service host").

use super::command::{self, Login};
use super::LoginError;
use crate::fabric::machines::RemoteMachines;
use crate::plan::{Host, Plan};
use crate::state::State;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Remotes {
    // Held while the agents are used; dropped with them.
    _rt: Option<tokio::runtime::Runtime>,
    machines: HashMap<String, RemoteMachines>,
    options: Vec<String>,
}

/// `--state-dir` and `--fabric` as this mln was given them, absolute: the
/// proxy runs from ssh, in no particular directory.
pub fn proxy_options(state_dir: &Path, fabric: Option<&Path>) -> Vec<String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).to_string_lossy().into_owned();
    let mut o = vec!["--state-dir".to_string(), abs(state_dir)];
    if let Some(f) = fabric {
        o.extend(["--fabric".to_string(), abs(f)]);
    }
    o
}

impl Remotes {
    /// `fabric` is asked for only when some host is on a service host.
    pub fn new<E>(
        hosts: &[&Host],
        templates: PathBuf,
        options: Vec<String>,
        fabric: impl FnOnce() -> Result<(crate::fabric::Fabric, tokio::runtime::Runtime), E>,
    ) -> Result<Remotes, E> {
        let mut r = Remotes { _rt: None, machines: HashMap::new(), options };
        if hosts.iter().all(|h| h.service_host.is_none()) {
            return Ok(r);
        }
        let (fabric, rt) = fabric()?;
        for h in hosts {
            if let Some(s) = &h.service_host {
                if fabric.names().iter().any(|n| n == s) {
                    r.machines.entry(s.clone()).or_insert_with(|| RemoteMachines::new(fabric.server(s), rt.handle().clone(), templates.clone()));
                }
            }
        }
        r._rt = Some(rt);
        Ok(r)
    }

    /// What ssh needs for `h`, wherever it runs.
    pub fn prepare(&self, state: &State, plan: &Plan, h: &Host) -> Result<Login, LoginError> {
        let Some(server) = &h.service_host else { return command::prepare(state, plan, h) };
        let Some(m) = self.machines.get(server) else {
            return Err(LoginError::Unreachable { host: h.name.clone(), message: format!("service host {server} is not in the fabric configuration") });
        };
        let read = |offset| m.console(&plan.project, &h.name, offset).map_err(|e| e.to_string());
        command::prepare_remote(state, plan, h, &command::Remote { console: &read, options: self.options.clone() })
    }
}
