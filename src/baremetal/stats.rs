//! Deployment statistics (Kadeploy's kastat): the automaton's per-node
//! per-step reports as state records, and per-node summaries of them.

use super::automaton::NodeReport;
use super::{PowerAction, PowerVia, RebootLevel};
use crate::state::StepRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// One deployment's reports as rows for the state database.
pub fn records(project: &str, deployment: &str, reports: &[NodeReport]) -> Vec<StepRecord> {
    reports
        .iter()
        .flat_map(|r| {
            r.steps.iter().map(move |s| StepRecord {
                project: project.to_string(),
                host: r.node.clone(),
                deployment: deployment.to_string(),
                step: s.step.as_str().to_string(),
                variant: s.variant.as_str().to_string(),
                retries: s.retries,
                duration_ms: u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
                ok: s.ok,
                reason: if s.ok { String::new() } else { s.failures.last().cloned().unwrap_or_default() },
                power_level: s.power.map(|p| p.level.as_str().to_string()).unwrap_or_default(),
                power_driver: s.power.map(|p| p.via.as_str().to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// A power operation outside a deployment. Recorded beside the steps
/// (its name as the step, the action as the variant, an id of its own
/// as the deployment), so `mln stats` says which power control acted;
/// kept out of the deployment counts and step times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOp {
    Start,
    Stop,
}

impl PowerOp {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerOp::Start => "start",
            PowerOp::Stop => "stop",
        }
    }
    fn of(step: &str) -> Option<PowerOp> {
        [PowerOp::Start, PowerOp::Stop].into_iter().find(|o| o.as_str() == step)
    }
}

/// The record of a power operation that acted.
pub fn power_op(project: &str, host: &str, op: PowerOp, action: PowerAction, level: RebootLevel, via: PowerVia, took: std::time::Duration) -> StepRecord {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    StepRecord {
        project: project.to_string(),
        host: host.to_string(),
        deployment: format!("{}-{at}", op.as_str()),
        step: op.as_str().to_string(),
        variant: super::power::action_word(action).to_string(),
        retries: 0,
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        ok: true,
        reason: String::new(),
        power_level: level.as_str().to_string(),
        power_driver: via.as_str().to_string(),
    }
}

/// What `mln stats` says of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeStats {
    pub project: String,
    pub host: String,
    pub deployments: u32,
    pub failed: u32,
    /// `failed / deployments`.
    pub failure_rate: f64,
    /// Mean duration of each step that ended (ok or not), in seconds.
    pub mean_step_secs: BTreeMap<String, f64>,
    pub retries: u32,
    /// The last failure's reason.
    pub last_failure: Option<String>,
    /// The last deployment's reboots: per step that rebooted the node,
    /// the level and the power control that did it (`hard (ipmi)`,
    /// `very_hard (fallback)`).
    pub last_power: BTreeMap<String, String>,
    /// Over every deployment: how often each level and power control
    /// did a step's reboot.
    pub power_levels: BTreeMap<String, u32>,
    /// The last `start` and `stop` that acted: the action, the level and
    /// the power control that did it (`on hard (power_command)`).
    pub last_power_ops: BTreeMap<String, String>,
}

/// `LEVEL (DRIVER)`, or None for a step that rebooted nothing.
fn power_of(r: &StepRecord) -> Option<String> {
    (!r.power_level.is_empty()).then(|| format!("{} ({})", r.power_level, r.power_driver))
}

/// Per node (in name order): deployments, failures, mean step times.
/// A deployment failed when any of its steps did.
pub fn summarize(steps: &[StepRecord]) -> Vec<NodeStats> {
    let mut by_node: BTreeMap<(String, String), Vec<&StepRecord>> = BTreeMap::new();
    for s in steps {
        by_node.entry((s.project.clone(), s.host.clone())).or_default().push(s);
    }
    by_node
        .into_iter()
        .map(|((project, host), all)| {
            let (ops, rows): (Vec<&StepRecord>, Vec<&StepRecord>) = all.into_iter().partition(|r| PowerOp::of(&r.step).is_some());
            // Oldest first: the last of each operation wins.
            let last_power_ops = ops.iter().filter_map(|r| Some((r.step.clone(), format!("{} {}", r.variant, power_of(r)?)))).collect();
            let mut deployments: BTreeMap<&str, bool> = BTreeMap::new();
            let mut sums: BTreeMap<String, (u64, u32)> = BTreeMap::new();
            let mut retries = 0;
            let mut last_failure = None;
            let mut power_levels: BTreeMap<String, u32> = BTreeMap::new();
            for r in &rows {
                if let Some(p) = power_of(r) {
                    *power_levels.entry(p).or_default() += 1;
                }
                let ok = deployments.entry(r.deployment.as_str()).or_insert(true);
                *ok &= r.ok;
                let e = sums.entry(r.step.clone()).or_default();
                e.0 += r.duration_ms;
                e.1 += 1;
                retries += r.retries;
                if !r.ok {
                    last_failure = Some(r.reason.clone());
                }
            }
            // Rows are oldest first: the last row's deployment is the last.
            let last = rows.last().map(|r| r.deployment.as_str());
            let last_power = rows.iter().filter(|r| Some(r.deployment.as_str()) == last).filter_map(|r| Some((r.step.clone(), power_of(r)?))).collect();
            let n = deployments.len() as u32;
            let failed = deployments.values().filter(|ok| !**ok).count() as u32;
            NodeStats {
                project,
                host,
                deployments: n,
                failed,
                failure_rate: if n == 0 { 0.0 } else { f64::from(failed) / f64::from(n) },
                mean_step_secs: sums.into_iter().map(|(k, (ms, c))| (k, ms as f64 / 1000.0 / f64::from(c))).collect(),
                retries,
                last_failure,
                last_power,
                power_levels,
                last_power_ops,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::automaton::{Step, StepReport, Variant};
    use crate::baremetal::{PowerUse, PowerVia, RebootLevel};
    use std::time::Duration;

    fn report(node: &str, ok: bool) -> NodeReport {
        let step = |step, secs, ok: bool| StepReport {
            step,
            variant: Variant::Untrusted,
            retries: u32::from(!ok),
            duration: Duration::from_secs(secs),
            ok,
            failures: if ok { vec![] } else { vec!["untrusted: timed out".into()] },
            power: (step != Step::Install).then_some(PowerUse { level: if ok { RebootLevel::Hard } else { RebootLevel::VeryHard }, via: PowerVia::Fallback }),
        };
        let steps = if ok { vec![step(Step::DeploySystem, 10, true), step(Step::Install, 30, true)] } else { vec![step(Step::DeploySystem, 200, false)] };
        NodeReport { node: node.into(), steps, ko: (!ok).then(|| "deploy_system: timed out".into()), finished: Duration::ZERO }
    }

    #[test]
    fn failure_rates_and_step_times_per_node() {
        let mut rows = records("p", "d1", &[report("a", true), report("b", false)]);
        rows.extend(records("p", "d2", &[report("a", true), report("b", true)]));
        let s = summarize(&rows);
        assert_eq!(s.len(), 2);
        let (a, b) = (&s[0], &s[1]);
        assert_eq!((a.deployments, a.failed, a.failure_rate), (2, 0, 0.0));
        assert_eq!(a.mean_step_secs["install"], 30.0);
        assert_eq!((b.deployments, b.failed, b.failure_rate), (2, 1, 0.5));
        assert_eq!(b.mean_step_secs["deploy_system"], 105.0);
        assert_eq!(b.last_failure.as_deref(), Some("untrusted: timed out"));
        assert_eq!(b.retries, 1);
        // Which level did each step's reboot: the last deployment's, and
        // counted over all.
        assert_eq!(a.last_power.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), [("deploy_system", "hard (fallback)")]);
        assert_eq!(b.last_power["deploy_system"], "hard (fallback)", "d2's, not d1's very hard");
        assert_eq!(b.power_levels.get("very_hard (fallback)"), Some(&1));
        assert_eq!(b.power_levels.get("hard (fallback)"), Some(&1));
        assert_eq!(rows.iter().find(|r| r.step == "install").map(|r| r.power_level.as_str()), Some(""));
    }

    /// `start` and `stop` say which power control acted, and are no
    /// deployments: counts, step times and the last deployment's reboots
    /// stay the deployments'.
    #[test]
    fn power_operations_are_shown_apart_from_deployments() {
        let took = Duration::from_millis(1500);
        let mut rows = records("p", "d1", &[report("a", true)]);
        rows.push(power_op("p", "a", PowerOp::Stop, PowerAction::Off, RebootLevel::Soft, PowerVia::Ssh, took));
        rows.push(power_op("p", "a", PowerOp::Start, PowerAction::On, RebootLevel::Hard, PowerVia::Ipmi, took));
        rows.push(power_op("p", "a", PowerOp::Start, PowerAction::On, RebootLevel::Hard, PowerVia::ClusterCommand, took));
        rows.push(power_op("p", "c", PowerOp::Stop, PowerAction::Off, RebootLevel::Hard, PowerVia::Fallback, took));
        let s = summarize(&rows);
        let (a, c) = (&s[0], &s[1]);
        assert_eq!((a.deployments, a.failed, a.retries), (1, 0, 0));
        assert_eq!(a.mean_step_secs.keys().collect::<Vec<_>>(), ["deploy_system", "install"]);
        assert_eq!(a.last_power.keys().collect::<Vec<_>>(), ["deploy_system"]);
        assert_eq!(a.power_levels.values().sum::<u32>(), 1);
        assert_eq!(a.last_power_ops["start"], "on hard (power_command)", "the last start");
        assert_eq!(a.last_power_ops["stop"], "off soft (ssh)");
        assert_eq!((c.deployments, c.failure_rate), (0, 0.0));
        assert_eq!(c.last_power_ops["stop"], "off hard (fallback)");
    }
}
