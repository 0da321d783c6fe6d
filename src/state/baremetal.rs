//! Bare metal's records: the environment library's rows (each version's
//! description as JSON; the library module decodes it) and each
//! deployment step of each node (for `mln stats`).

use super::error::{db, StateError};
use super::{now, State};
use rusqlite::{params, OptionalExtension};
use std::path::PathBuf;

/// One environment version as stored: the description is the library's
/// JSON (crate::baremetal::env::Environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRow {
    pub name: String,
    pub version: u32,
    pub json: String,
}

/// One node's one macro-step of one deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub project: String,
    pub host: String,
    /// Identifies the deployment (one `mln build`): steps of one node with
    /// the same id are one deployment.
    pub deployment: String,
    /// `deploy_system`, `install` or `boot`.
    pub step: String,
    /// The variant that ended the step (the last tried).
    pub variant: String,
    pub retries: u32,
    pub duration_ms: u64,
    pub ok: bool,
    /// Why it failed; empty when ok.
    pub reason: String,
    /// The level of the step's last reboot done (`soft`, `hard`,
    /// `very_hard`); empty when the step rebooted nothing.
    pub power_level: String,
    /// Which power control did it (`ssh`, `ipmi`, `command`, `fallback`,
    /// `power_command`); empty with no reboot.
    pub power_driver: String,
}

impl State {
    /// The environment library's directory (files of each version under
    /// `NAME/VERSION/`).
    pub fn environments_dir(&self) -> PathBuf {
        self.dir.join("environments")
    }

    /// `environments/NAME/VERSION`, proven inside the state directory.
    pub fn environment_dir(&self, name: &str, version: u32) -> Result<PathBuf, StateError> {
        Ok(crate::name::inside(&self.dir, &["environments", name, &version.to_string()])?)
    }

    /// Records a version; false when it is there already (never replaced:
    /// a deployed version must stay what it was).
    pub fn add_environment(&self, row: &EnvRow) -> Result<bool, StateError> {
        let n = self
            .db()
            .execute(
                "INSERT OR IGNORE INTO environments (name, version, env_json, added) VALUES (?1, ?2, ?3, ?4)",
                params![row.name, row.version, row.json, now()],
            )
            .map_err(db("add environment"))?;
        Ok(n == 1)
    }

    /// Every version of every environment, by name then version.
    pub fn environments(&self) -> Result<Vec<EnvRow>, StateError> {
        let db = self.db();
        let mut st = db.prepare("SELECT name, version, env_json FROM environments ORDER BY name, version").map_err(super::error::db("environments"))?;
        let rows = st.query_map([], |r| Ok(EnvRow { name: r.get(0)?, version: r.get(1)?, json: r.get(2)? })).map_err(super::error::db("environments"))?;
        rows.collect::<Result<_, _>>().map_err(super::error::db("environments"))
    }

    /// The named version, or the newest when None.
    pub fn environment(&self, name: &str, version: Option<u32>) -> Result<Option<EnvRow>, StateError> {
        let db = self.db();
        let row = |r: &rusqlite::Row| Ok(EnvRow { name: r.get(0)?, version: r.get(1)?, json: r.get(2)? });
        match version {
            Some(v) => db.query_row("SELECT name, version, env_json FROM environments WHERE name = ?1 AND version = ?2", params![name, v], row),
            None => db.query_row("SELECT name, version, env_json FROM environments WHERE name = ?1 ORDER BY version DESC LIMIT 1", params![name], row),
        }
        .optional()
        .map_err(super::error::db("environment"))
    }

    pub fn forget_environment(&self, name: &str, version: u32) -> Result<bool, StateError> {
        let n = self.db().execute("DELETE FROM environments WHERE name = ?1 AND version = ?2", params![name, version]).map_err(db("remove environment"))?;
        Ok(n == 1)
    }

    /// Records steps (one transaction).
    pub fn record_steps(&self, steps: &[StepRecord]) -> Result<(), StateError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(super::error::db("record steps"))?;
        for s in steps {
            tx.execute(
                "INSERT INTO deploy_steps (at, project, host, deployment, step, variant, retries, duration_ms, ok, reason, power_level, power_driver)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    now(),
                    s.project,
                    s.host,
                    s.deployment,
                    s.step,
                    s.variant,
                    s.retries,
                    i64::try_from(s.duration_ms).unwrap_or(i64::MAX),
                    s.ok,
                    s.reason,
                    s.power_level,
                    s.power_driver
                ],
            )
            .map_err(super::error::db("record steps"))?;
        }
        tx.commit().map_err(super::error::db("record steps"))
    }

    /// Steps recorded, oldest first, of a project and/or a host (None: all).
    pub fn steps(&self, project: Option<&str>, host: Option<&str>) -> Result<Vec<StepRecord>, StateError> {
        let db = self.db();
        let mut st = db
            .prepare(
                "SELECT project, host, deployment, step, variant, retries, duration_ms, ok, reason, power_level, power_driver FROM deploy_steps
                 WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR host = ?2) ORDER BY id",
            )
            .map_err(super::error::db("steps"))?;
        let rows = st
            .query_map(params![project, host], |r| {
                Ok(StepRecord {
                    project: r.get(0)?,
                    host: r.get(1)?,
                    deployment: r.get(2)?,
                    step: r.get(3)?,
                    variant: r.get(4)?,
                    retries: r.get(5)?,
                    duration_ms: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                    ok: r.get(7)?,
                    reason: r.get(8)?,
                    power_level: r.get(9)?,
                    power_driver: r.get(10)?,
                })
            })
            .map_err(super::error::db("steps"))?;
        rows.collect::<Result<_, _>>().map_err(super::error::db("steps"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_versions_are_kept_apart_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let row = |v: u32, j: &str| EnvRow { name: "deb".into(), version: v, json: j.into() };
        assert!(s.add_environment(&row(1, "one")).unwrap());
        assert!(s.add_environment(&row(2, "two")).unwrap());
        assert!(!s.add_environment(&row(2, "other")).unwrap(), "a version is never replaced");
        assert_eq!(s.environment("deb", None).unwrap().unwrap().json, "two", "newest");
        assert_eq!(s.environment("deb", Some(1)).unwrap().unwrap().json, "one");
        assert!(s.environment("nope", None).unwrap().is_none());
        assert!(s.forget_environment("deb", 2).unwrap());
        assert_eq!(s.environment("deb", None).unwrap().unwrap().version, 1);
        assert!(s.environment_dir("../x", 1).is_err());
    }

    #[test]
    fn steps_are_read_back_by_project_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let step = |host: &str, ok: bool| StepRecord {
            project: "p".into(),
            host: host.into(),
            deployment: "d1".into(),
            step: "install".into(),
            variant: "untrusted".into(),
            retries: 1,
            duration_ms: 1500,
            ok,
            reason: if ok { String::new() } else { "timeout".into() },
            power_level: if ok { "very_hard".into() } else { String::new() },
            power_driver: if ok { "fallback".into() } else { String::new() },
        };
        s.record_steps(&[step("a", true), step("b", false)]).unwrap();
        assert_eq!(s.steps(Some("p"), None).unwrap().len(), 2);
        assert_eq!(s.steps(None, Some("b")).unwrap(), [step("b", false)]);
        assert!(s.steps(Some("q"), None).unwrap().is_empty());
    }
}
