//! The comparison itself: hosts matched by name, their resolved values key
//! by key (interfaces by name, then field by field), secrets compared by
//! their hashes and never shown.

use super::classify::{self, Class, Impossible};
use crate::plan::Plan;
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub key: String,
    pub old: Value,
    pub new: Value,
}

/// One host's part of an upgrade: `{"host", "class", "changes", "why"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostDiff {
    pub host: String,
    pub class: Class,
    pub changes: Vec<Change>,
    /// Why the host takes its class (the reasons of its heaviest changes).
    pub why: String,
}

/// A change of the project itself (switches, hooks): recorded, no machine
/// touched for it.
pub type ProjectChange = Change;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Upgrade {
    pub project: String,
    pub hosts: Vec<HostDiff>,
    pub project_changes: Vec<ProjectChange>,
}

impl Upgrade {
    /// Whether anything at all differs.
    pub fn is_empty(&self) -> bool {
        self.project_changes.is_empty() && self.hosts.iter().all(|h| h.class == Class::Unchanged)
    }
    /// How many hosts take each class, heaviest last.
    pub fn counts(&self) -> Vec<(Class, usize)> {
        let mut m = std::collections::BTreeMap::new();
        for h in &self.hosts {
            *m.entry(h.class).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("the new file describes project `{new}`, not `{old}`: nothing is changed")]
    OtherProject { old: String, new: String },
    /// Changes no action can make, each `host: what`.
    #[error("{}", .0.join("\n"))]
    Impossible(Vec<String>),
}

impl UpgradeError {
    /// As a diagnostic of the compiler's model.
    pub fn diagnostic(&self) -> crate::diag::Diagnostic {
        let code = match self {
            UpgradeError::OtherProject { .. } => "mln::upgrade::other_project",
            UpgradeError::Impossible(_) => "mln::upgrade::impossible",
        };
        crate::diag::Diagnostic::error(code, self.to_string())
    }
}

/// What turns `old` (as deployed) into `new`.
pub fn diff(old: &Plan, new: &Plan) -> Result<Upgrade, UpgradeError> {
    if old.project != new.project {
        return Err(UpgradeError::OtherProject { old: old.project.clone(), new: new.project.clone() });
    }
    // Secrets are recorded as hashes: compare like with like.
    let (old, new) = (crate::state::redacted(old), crate::state::redacted(new));
    let mut hosts = Vec::new();
    let mut impossible = Vec::new();
    let (old_at, new_at) = (old.hosts_by_name(), new.hosts_by_name());
    for o in &old.hosts {
        match new_at.get(o.name.as_str()) {
            None => hosts.push(HostDiff { host: o.name.clone(), class: Class::Remove, changes: Vec::new(), why: "not in the new file".into() }),
            Some(n) => match host(&to_map(o), &to_map(n)) {
                Ok((class, changes, why)) => hosts.push(HostDiff { host: o.name.clone(), class, changes, why }),
                Err(Impossible(e)) => impossible.push(format!("{}: {e}", o.name)),
            },
        }
    }
    for n in new.hosts.iter().filter(|n| !old_at.contains_key(n.name.as_str())) {
        hosts.push(HostDiff { host: n.name.clone(), class: Class::Add, changes: Vec::new(), why: "new in the file".into() });
    }
    if !impossible.is_empty() {
        return Err(UpgradeError::Impossible(impossible));
    }
    let mut project_changes = Vec::new();
    let (os, ns) = (serde_json::to_value(&old.switches).unwrap_or_default(), serde_json::to_value(&new.switches).unwrap_or_default());
    if os != ns {
        project_changes.push(Change { key: "switches".into(), old: os, new: ns });
    }
    let (oh, nh) = (serde_json::to_value(&old.hooks).unwrap_or_default(), serde_json::to_value(&new.hooks).unwrap_or_default());
    if oh != nh {
        project_changes.push(Change { key: "hooks".into(), old: oh, new: nh });
    }
    Ok(Upgrade { project: new.project.clone(), hosts, project_changes })
}

fn to_map<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

type Classified = (Class, Vec<Change>, String);

/// Every class of change between two versions of one host (a host that
/// takes `disk` may need a restart too). What no action can do yields
/// nothing here: `diff` refuses it first.
pub fn classes_of(old: &crate::plan::Host, new: &crate::plan::Host) -> std::collections::BTreeSet<Class> {
    let (old, new) = (crate::state::redacted_host(old), crate::state::redacted_host(new));
    found(&to_map(&old), &to_map(&new)).map(|f| f.into_iter().map(|(c, _, _)| c).collect()).unwrap_or_default()
}

fn host(old: &Map<String, Value>, new: &Map<String, Value>) -> Result<Classified, Impossible> {
    let found = found(old, new)?;
    let class = found.iter().map(|f| f.0).max().unwrap_or(Class::Unchanged);
    let mut why: Vec<String> = found.iter().filter(|f| f.0 == class).map(|f| f.2.clone()).collect();
    why.dedup();
    Ok((class, found.into_iter().map(|f| f.1).collect(), why.join("; ")))
}

fn found(old: &Map<String, Value>, new: &Map<String, Value>) -> Result<Vec<(Class, Change, String)>, Impossible> {
    let mut found: Vec<(Class, Change, String)> = Vec::new();
    for k in keys(old, new) {
        let (o, n) = (old.get(&k).unwrap_or(&Value::Null), new.get(&k).unwrap_or(&Value::Null));
        if o == n {
            continue;
        }
        if k == "interfaces" {
            found.extend(interfaces(o, n));
            continue;
        }
        let (class, why) = classify::key(&k, o, n)?;
        if class == Class::Unchanged {
            continue;
        }
        let change = if classify::secret(&k) {
            Change { key: classify::label(&k).into(), old: hidden(&k, o, &Value::Null), new: hidden(&k, n, o) }
        } else {
            Change { key: classify::label(&k).into(), old: o.clone(), new: n.clone() }
        };
        found.push((class, change, why));
    }
    Ok(found)
}

/// Every key of either map, in the old map's order, then new ones.
fn keys(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut ks: Vec<String> = old.keys().cloned().collect();
    ks.extend(new.keys().filter(|k| !old.contains_key(*k)).cloned());
    ks
}

fn interfaces(old: &Value, new: &Value) -> Vec<(Class, Change, String)> {
    let by_name = |v: &Value| -> Vec<(String, Map<String, Value>)> {
        v.as_array()
            .map(|a| a.iter().filter_map(|i| Some((i.get("name")?.as_str()?.to_string(), i.as_object()?.clone()))).collect())
            .unwrap_or_default()
    };
    let (old, new) = (by_name(old), by_name(new));
    let mut out = Vec::new();
    for (name, o) in &old {
        match new.iter().find(|(n, _)| n == name) {
            None => out.push((Class::Live, Change { key: format!("network {name}"), old: Value::Object(o.clone()), new: Value::Null }, format!("interface {name} is unplugged"))),
            Some((_, n)) => {
                for k in keys(o, n) {
                    let (a, b) = (o.get(&k).unwrap_or(&Value::Null), n.get(&k).unwrap_or(&Value::Null));
                    if a != b {
                        let (class, why) = classify::interface_key(&k);
                        out.push((class, Change { key: format!("network {name} {k}"), old: a.clone(), new: b.clone() }, format!("{name}: {why}")));
                    }
                }
            }
        }
    }
    // Plugged in live, but only the guest gives it its address, at boot.
    for (name, n) in new.iter().filter(|(n, _)| !old.iter().any(|(o, _)| o == n)) {
        out.push((
            Class::GuestConfig,
            Change { key: format!("network {name}"), old: Value::Null, new: Value::Object(n.clone()) },
            format!("interface {name} is plugged in; the guest configures it at boot"),
        ));
    }
    out
}

/// A secret's stand-in: users by name (a changed password said so),
/// plugins by name, anything else as "(set, hidden)".
fn hidden(key: &str, v: &Value, other: &Value) -> Value {
    let name = |u: &Value| u.get("name").and_then(Value::as_str).unwrap_or("?").to_string();
    match (key, v) {
        (_, Value::Null) => Value::Null,
        ("users", Value::Array(us)) => Value::Array(
            us.iter()
                .map(|u| {
                    let changed = other.as_array().and_then(|o| o.iter().find(|x| name(x) == name(u))).is_some_and(|x| x != u);
                    Value::String(if changed { format!("{} (password changed)", name(u)) } else { name(u) })
                })
                .collect(),
        ),
        ("plugins" | "plugin_settings", Value::Object(m)) => Value::Array(m.keys().map(|k| Value::String(k.clone())).collect()),
        _ => Value::String("(set, hidden)".into()),
    }
}
