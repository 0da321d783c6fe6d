//! What mln has made, recorded so that an interrupted operation can be run
//! again (nothing made twice, nothing left behind), `remove` finds
//! everything, and `status` is right after a crash. One SQLite database in
//! the state directory (its schema versioned, older ones migrated on
//! open), and a lock file per project.

mod baremetal;
mod error;
mod lock;
mod private;
mod records;
mod schema;

pub use baremetal::{EnvRow, StepRecord};
pub use error::StateError;
pub use lock::ProjectLock;
pub use private::{make_private, write_private};
pub use records::{redacted, redacted_host, HostRecord, Phase, ProjectRecord, Resource, ResourceKind};
pub use schema::VERSION as SCHEMA_VERSION;

use error::db;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct State {
    dir: PathBuf,
    db: Mutex<Connection>,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

const PROJECT_COLUMNS: &str = "name, phase, file, connect, plan_json, places_json";

fn project_row(r: &rusqlite::Row) -> rusqlite::Result<(String, String, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn decode((name, phase, file, connect, plan, places): (String, String, String, String, String, String)) -> Result<ProjectRecord, StateError> {
    let bad = |what: &'static str, why: String| StateError::Unreadable { project: name.clone(), what, why };
    let phase = Phase::parse(&phase).ok_or_else(|| bad("phase", format!("`{phase}`")))?;
    let plan = serde_json::from_str(&plan).map_err(|e| bad("plan", e.to_string()))?;
    let places = serde_json::from_str(&places).map_err(|e| bad("service hosts", e.to_string()))?;
    Ok(ProjectRecord { name, phase, file, connect, plan, places })
}

impl State {
    /// The state directory: `MLN_STATE_DIR`, else `/var/lib/mln` for root,
    /// else `$XDG_STATE_HOME/mln` or `~/.local/state/mln`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("MLN_STATE_DIR") {
            return PathBuf::from(d);
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/mln");
        }
        if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(d).join("mln");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/state/mln")
    }

    /// Opens (making if needed) the state directory. It holds password
    /// hashes, guests' disks and saved memory: the directory is guarded
    /// (see `private::guard`) and the database made 0600, also when an
    /// older mln left them readable. An older database is migrated.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        // A relative state directory would reach libvirt's embedded driver
        // as a relative root, which it refuses.
        let dir = std::path::absolute(dir).map_err(|err| StateError::io(dir, "use state directory", err))?;
        // Below the guarded top directory, QEMU (another user) must pass
        // through `projects` and `templates`; `locks` is mln's alone.
        for (sub, mode) in [("", 0o700), ("projects", 0o755), ("locks", 0o700), ("templates", 0o755)] {
            let d = dir.join(sub);
            std::fs::DirBuilder::new().recursive(true).mode(mode).create(&d).map_err(|err| StateError::io(&d, "create", err))?;
        }
        private::guard(&dir)?;
        private::private(&dir.join("locks"), 0o700)?;
        let db_path = dir.join("mln.db");
        // SQLite makes the file with the process's umask: make it private
        // before SQLite writes anything into it.
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&db_path).map_err(|err| StateError::io(&db_path, "open", err))?;
        for f in ["mln.db", "mln.db-wal", "mln.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                private::private(&p, 0o600)?;
            }
        }
        let mut conn = Connection::open(&db_path).map_err(db("open"))?;
        // Several mln processes may use one database (different projects):
        // wait for each other's writes instead of failing.
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(db("busy timeout"))?;
        // WAL: readers never wait for a writer. Switching to it writes the
        // database header, so only a database not in WAL yet is switched.
        // SQLite does not wait out the busy timeout here: while another
        // connection switches a fresh database to WAL, asking for the mode
        // or switching fails at once with "database is locked" (seen with
        // 8 processes opening one new state at once). So it is retried,
        // within the same 30 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let wal = |conn: &Connection| -> rusqlite::Result<()> {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                conn.pragma_update(None, "journal_mode", "WAL")?;
            }
            Ok(())
        };
        loop {
            match wal(&conn) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _)) if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(db("WAL")(e)),
            }
        }
        schema::migrate(&mut conn)?;
        Ok(State { dir, db: Mutex::new(conn) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// A host's directory: `projects/PROJECT/HOST`, proven to lie inside
    /// the state directory (see [`crate::name::inside`]).
    pub fn host_dir(&self, project: &str, host: &str) -> Result<PathBuf, StateError> {
        Ok(crate::name::inside(&self.dir, &["projects", project, host])?)
    }
    pub fn project_dir(&self, project: &str) -> Result<PathBuf, StateError> {
        Ok(crate::name::inside(&self.dir, &["projects", project])?)
    }
    /// Whether `path` is a path mln may remove: strictly below the
    /// `projects` directory, with no `..` and no symbolic link on the way.
    /// Records made by an older mln (or a tampered database) that point
    /// elsewhere are forgotten, never followed.
    pub fn owns_path(&self, path: &Path) -> bool {
        let Ok(rest) = path.strip_prefix(self.dir.join("projects")) else { return false };
        let parts: Option<Vec<&str>> = rest.components().map(|c| c.as_os_str().to_str()).collect();
        match parts {
            Some(parts) if !parts.is_empty() => crate::name::inside(&self.dir.join("projects"), &parts).is_ok(),
            _ => false,
        }
    }
    pub fn libvirt_root(&self) -> PathBuf {
        self.dir.join("libvirt")
    }
    pub fn templates_dir(&self) -> PathBuf {
        self.dir.join("templates")
    }
    /// The default libvirt connection: the embedded QEMU driver rooted in
    /// this state directory (no daemon).
    pub fn embedded_uri(&self) -> String {
        format!("qemu:///embed?root={}", self.libvirt_root().display())
    }

    /// Only one mln works on a project at a time.
    pub fn lock(&self, project: &str) -> Result<ProjectLock, StateError> {
        let path = crate::name::inside(&self.dir, &["locks", &format!("{project}.lock")])?;
        ProjectLock::acquire(&path, project)
    }

    /// Removes a project's lock file (after `remove`: nothing is left).
    pub fn drop_lock_file(&self, project: &str) {
        if let Ok(path) = crate::name::inside(&self.dir, &["locks", &format!("{project}.lock")]) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a transaction that holds the write lock from its start
    /// (`BEGIN IMMEDIATE`), so it waits for other writers under the busy
    /// timeout instead of failing with "database is locked" when a read
    /// lock taken first cannot be upgraded (see [`schema::migrate`]).
    fn write<T>(&self, what: &'static str, f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>) -> Result<T, StateError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(error::db(what))?;
        let out = f(&tx).map_err(error::db(what))?;
        tx.commit().map_err(error::db(what))?;
        Ok(out)
    }

    pub fn project(&self, name: &str) -> Result<Option<ProjectRecord>, StateError> {
        let row = self
            .db()
            .query_row(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1"), [name], project_row)
            .optional()
            .map_err(db("read project"))?;
        row.map(decode).transpose()
    }

    /// The project, or an error naming it.
    pub fn require(&self, name: &str) -> Result<ProjectRecord, StateError> {
        self.project(name)?.ok_or_else(|| StateError::NoProject(name.to_string()))
    }

    /// Every project, each decoded (an unreadable one is an error of its own).
    pub fn projects(&self) -> Result<Vec<Result<ProjectRecord, StateError>>, StateError> {
        let db = self.db();
        let mut st = db.prepare(&format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name")).map_err(error::db("list"))?;
        let rows = st.query_map([], project_row).map_err(error::db("list"))?;
        let rows: Vec<_> = rows.collect::<Result<_, _>>().map_err(error::db("list"))?;
        Ok(rows.into_iter().map(decode).collect())
    }

    /// Names of every project recorded, readable or not.
    pub fn project_names(&self) -> Result<Vec<String>, StateError> {
        let db = self.db();
        let mut st = db.prepare("SELECT name FROM projects ORDER BY name").map_err(error::db("list"))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(error::db("list"))?;
        rows.collect::<Result<_, _>>().map_err(error::db("list"))
    }

    pub fn save_project(&self, r: &ProjectRecord) -> Result<(), StateError> {
        let plan = serde_json::to_string(&redacted(&r.plan)).map_err(|e| StateError::Unreadable { project: r.name.clone(), what: "plan", why: e.to_string() })?;
        let places = serde_json::to_string(&r.places).expect("strings serialize");
        self.db()
            .execute(
                "INSERT INTO projects (name, phase, file, connect, plan_json, places_json, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(name) DO UPDATE SET phase = ?2, file = ?3, connect = ?4, plan_json = ?5, places_json = ?6, updated = ?7",
                params![r.name, r.phase.as_str(), r.file, r.connect, plan, places, now()],
            )
            .map(drop)
            .map_err(db("save project"))
    }

    pub fn set_phase(&self, project: &str, phase: Phase) -> Result<(), StateError> {
        self.db()
            .execute("UPDATE projects SET phase = ?2, updated = ?3 WHERE name = ?1", params![project, phase.as_str(), now()])
            .map(drop)
            .map_err(db("set phase"))
    }

    /// Records where hosts are and how far their build got (one
    /// transaction).
    pub fn record_hosts(&self, project: &str, hosts: &[HostRecord]) -> Result<(), StateError> {
        self.write("record hosts", |tx| {
            for h in hosts {
                tx.execute(
                    "INSERT INTO hosts (project, host, place, phase) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(project, host) DO UPDATE SET place = ?3, phase = ?4",
                    params![project, h.host, h.place.as_deref().unwrap_or(""), h.phase.as_str()],
                )?;
            }
            Ok(())
        })
    }

    /// The hosts recorded for a project, by name.
    pub fn hosts(&self, project: &str) -> Result<Vec<HostRecord>, StateError> {
        let db = self.db();
        let mut st = db.prepare("SELECT host, place, phase FROM hosts WHERE project = ?1 ORDER BY host").map_err(error::db("hosts"))?;
        let rows = st
            .query_map([project], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(error::db("hosts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (host, place, phase) = row.map_err(error::db("hosts"))?;
            let phase = Phase::parse(&phase)
                .ok_or_else(|| StateError::Unreadable { project: project.to_string(), what: "hosts", why: format!("unknown phase `{phase}`") })?;
            out.push(HostRecord { host, place: (!place.is_empty()).then_some(place), phase });
        }
        Ok(out)
    }

    /// Records a resource *before* it is made, so an interruption leaves a
    /// record of everything that may exist (remove tolerates what does not).
    pub fn record(&self, project: &str, r: &Resource) -> Result<(), StateError> {
        self.record_all(project, std::slice::from_ref(r))
    }

    /// Records several resources in one transaction (one sync, not many).
    pub fn record_all(&self, project: &str, rs: &[Resource]) -> Result<(), StateError> {
        self.write("record resources", |tx| {
            for r in rs {
                tx.execute("INSERT OR IGNORE INTO resources (project, host, kind, ident) VALUES (?1, ?2, ?3, ?4)", params![project, r.host, r.kind.as_str(), r.ident])?;
            }
            Ok(())
        })
    }

    /// Whether this exact resource is recorded for the project.
    pub fn has_resource(&self, project: &str, kind: ResourceKind, ident: &str) -> Result<bool, StateError> {
        self.db()
            .query_row(
                "SELECT 1 FROM resources WHERE project = ?1 AND kind = ?2 AND ident = ?3 LIMIT 1",
                params![project, kind.as_str(), ident],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db("read resource"))
    }

    pub fn resources(&self, project: &str) -> Result<Vec<Resource>, StateError> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT host, kind, ident FROM resources WHERE project = ?1 ORDER BY host, kind, ident")
            .map_err(error::db("resources"))?;
        let rows = st
            .query_map([project], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(error::db("resources"))?;
        let mut out = Vec::new();
        for row in rows {
            let (host, kind, ident) = row.map_err(error::db("resources"))?;
            let kind = ResourceKind::parse(&kind)
                .ok_or_else(|| StateError::Unreadable { project: project.to_string(), what: "resources", why: format!("unknown kind `{kind}`") })?;
            out.push(Resource { host, kind, ident });
        }
        Ok(out)
    }

    pub fn forget_resource(&self, project: &str, r: &Resource) -> Result<(), StateError> {
        self.db()
            .execute(
                "DELETE FROM resources WHERE project = ?1 AND host = ?2 AND kind = ?3 AND ident = ?4",
                params![project, r.host, r.kind.as_str(), r.ident],
            )
            .map(drop)
            .map_err(db("forget resource"))
    }

    /// Forgets these hosts of a project (removed by an upgrade).
    pub fn forget_hosts(&self, project: &str, hosts: &[String]) -> Result<(), StateError> {
        self.write("forget hosts", |tx| {
            for h in hosts {
                tx.execute("DELETE FROM hosts WHERE project = ?1 AND host = ?2", params![project, h])?;
            }
            Ok(())
        })
    }

    pub fn forget_project(&self, project: &str) -> Result<(), StateError> {
        self.write("forget", |tx| {
            tx.execute("DELETE FROM resources WHERE project = ?1", [project])?;
            tx.execute("DELETE FROM hosts WHERE project = ?1", [project])?;
            tx.execute("DELETE FROM projects WHERE name = ?1", [project])?;
            Ok(())
        })
    }

    pub fn journal(&self, project: &str, op: &str, host: Option<&str>, ok: bool, message: &str) {
        // The journal is a record for people; failing to write it must not
        // fail the operation it describes.
        let _ = self.db().execute(
            "INSERT INTO journal (at, project, op, host, ok, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now(), project, op, host, ok, message],
        );
    }

    /// The journal of a project, oldest first: (op, ok, message).
    pub fn journal_of(&self, project: &str) -> Result<Vec<(String, bool, String)>, StateError> {
        let db = self.db();
        let mut st = db.prepare("SELECT op, ok, message FROM journal WHERE project = ?1 ORDER BY id").map_err(error::db("journal"))?;
        let rows = st.query_map([project], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(error::db("journal"))?;
        rows.collect::<Result<_, _>>().map_err(error::db("journal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ProjectRecord {
        let plan = crate::plan::Plan { project: name.into(), hosts: vec![], switches: vec![], hooks: Default::default() };
        ProjectRecord { name: name.into(), phase: Phase::Building, file: "p.mln".into(), connect: "test:///default".into(), plan, places: vec![] }
    }

    #[test]
    fn projects_and_resources_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = State::open(dir.path()).unwrap();
            s.save_project(&record("p")).unwrap();
            let r = Resource { host: "a".into(), kind: ResourceKind::Domain, ident: "a.p".into() };
            s.record("p", &r).unwrap();
            s.record("p", &r).unwrap(); // twice is once
            s.set_phase("p", Phase::Built).unwrap();
        }
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.project("p").unwrap().unwrap().phase, Phase::Built);
        assert_eq!(s.resources("p").unwrap().len(), 1);
        assert!(s.has_resource("p", ResourceKind::Domain, "a.p").unwrap());
        assert!(!s.has_resource("p", ResourceKind::Domain, "b.p").unwrap());
        s.forget_project("p").unwrap();
        assert!(s.project("p").unwrap().is_none());
        assert!(s.resources("p").unwrap().is_empty());
    }

    /// What several `mln ssh`/`mln exec` at once do to one state: open it
    /// (fresh, then existing), read and write short transactions. Each
    /// thread has its own connection, as each process has; SQLite locks
    /// them against each other as it does processes. Every one succeeds.
    #[test]
    fn many_at_once_on_one_state_all_succeed() {
        for fresh in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            if !fresh {
                drop(State::open(dir.path()).unwrap());
            }
            let n = 8;
            let start = std::sync::Barrier::new(n);
            let errors: Vec<String> = std::thread::scope(|sc| {
                let workers: Vec<_> = (0..n)
                    .map(|i| {
                        let (start, dir) = (&start, dir.path());
                        sc.spawn(move || -> Result<(), StateError> {
                            start.wait();
                            let s = State::open(dir)?;
                            let name = format!("p{i}");
                            for round in 0..20 {
                                s.save_project(&record(&name))?;
                                let _ = s.projects()?;
                                s.record_all(&name, &[Resource { host: "a".into(), kind: ResourceKind::Domain, ident: format!("a{round}.{name}") }])?;
                                s.record_hosts(&name, &[HostRecord { host: "a".into(), place: None, phase: Phase::Built }])?;
                                s.set_phase(&name, Phase::Built)?;
                                s.journal(&name, "ssh", Some("a"), true, "x");
                            }
                            s.forget_project(&name)
                        })
                    })
                    .collect();
                workers.into_iter().filter_map(|w| w.join().unwrap().err()).map(|e| e.to_string()).collect()
            });
            assert!(errors.is_empty(), "fresh state: {fresh}: {errors:?}");
            let s = State::open(dir.path()).unwrap();
            assert!(s.project_names().unwrap().is_empty());
            assert_eq!(s.journal_of("p3").unwrap().len(), 20, "no write was lost");
        }
    }

    #[test]
    fn a_project_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let held = s.lock("p").unwrap();
        let err = s.lock("p").unwrap_err();
        assert!(err.to_string().contains("another mln") && err.retryable(), "{err}");
        assert!(s.lock("q").is_ok(), "other projects are not blocked");
        drop(held);
        assert!(s.lock("p").is_ok());
    }

    #[test]
    fn a_database_of_a_newer_mln_is_refused_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        drop(State::open(dir.path()).unwrap());
        let c = Connection::open(dir.path().join("mln.db")).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = State::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err}");
    }
}
