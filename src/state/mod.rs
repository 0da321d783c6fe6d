//! What mln has made, recorded so that an interrupted operation can be run
//! again (nothing made twice, nothing left behind), `remove` finds
//! everything, and `status` is right after a crash. One SQLite database in
//! the state directory, and a lock file per project.

mod lock;

pub use lock::ProjectLock;

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The user QEMU runs as under libvirt's QEMU driver on Debian (the
/// embedded driver included, whose qemu.conf mln writes and leaves at the
/// built-in default).
const QEMU_USER: &str = "libvirt-qemu";

/// The group that must be able to reach guests' disks and libvirt's
/// per-domain files under the state directory: the QEMU user's, when mln
/// runs as root and that user exists.
fn qemu_gid() -> Option<libc::gid_t> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new(QEMU_USER).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer valid until the next call;
    // we copy the one field we need at once. mln calls it from one thread
    // (at `State::open`).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    (!pw.is_null()).then(|| unsafe { (*pw).pw_gid })
}

/// Makes the state directory unreachable for other local users: 0700, or
/// 0710 with the QEMU user's group where QEMU (another user) must pass
/// through it to open disks, seeds and libvirt's per-domain files. Mode
/// bits on the one top directory guard everything below it, including the
/// files libvirt makes with its own modes.
fn guard(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match qemu_gid() {
        Some(gid) => {
            std::os::unix::fs::chown(dir, None, Some(gid)).map_err(|err| format!("cannot give {} to QEMU's group: {err}", dir.display()))?;
            0o710
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|err| format!("cannot make {} private: {err}", dir.display()))
}

/// Writes `data` to `path` through a temporary name, readable by its owner
/// only (seeds hold password hashes and the guest's configuration).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|err| format!("cannot write {}: {err}", tmp.display()))?;
    f.write_all(data).map_err(|err| format!("cannot write {}: {err}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// Makes an existing file readable by its owner only.
pub fn make_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|err| format!("cannot make {} private: {err}", path.display()))
}

/// The plan as recorded in a state database: secrets that the running
/// machines no longer need (the VNC password went into the domain
/// definition at build time) are replaced by their SHA-256, so a record
/// still tells whether a later plan changed them.
pub fn plan_record(plan: &crate::plan::Plan) -> Result<String, String> {
    serde_json::to_string(&redacted(plan)).map_err(|err| format!("cannot record the plan: {err}"))
}

/// `plan` with its secrets replaced as in [`plan_record`].
pub fn redacted(plan: &crate::plan::Plan) -> crate::plan::Plan {
    use sha2::{Digest, Sha256};
    let mut p = plan.clone();
    for h in &mut p.hosts {
        if let Some(pw) = &mut h.vnc_password {
            if !pw.starts_with("sha256:") {
                let d = Sha256::digest(pw.as_bytes());
                *pw = format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>());
            }
        }
    }
    p
}

pub struct State {
    dir: PathBuf,
    db: Mutex<Connection>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProjectRow {
    pub name: String,
    /// `building` until every host is built, then `built`.
    pub state: String,
    pub file: String,
    pub connect: String,
    pub plan_json: String,
}

/// A project spread over service hosts, as the managing machine knows it:
/// the whole plan and every service host that may hold part of it (named
/// before anything is made there). Each service host keeps its own share
/// in its own database; hosts without a service host are an ordinary
/// local project of the same name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FabricRow {
    pub name: String,
    pub state: String,
    pub file: String,
    pub plan_json: String,
    pub servers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub host: String,
    /// `dir`, `disk`, `seed`, `domain`.
    pub kind: String,
    pub ident: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    file TEXT NOT NULL,
    connect TEXT NOT NULL,
    plan_json TEXT NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    project TEXT NOT NULL,
    host TEXT NOT NULL,
    kind TEXT NOT NULL,
    ident TEXT NOT NULL,
    PRIMARY KEY (project, host, kind, ident)
);
CREATE TABLE IF NOT EXISTS fabric_projects (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    file TEXT NOT NULL,
    plan_json TEXT NOT NULL,
    servers_json TEXT NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    project TEXT NOT NULL,
    op TEXT NOT NULL,
    host TEXT,
    ok INTEGER NOT NULL,
    message TEXT NOT NULL
);
";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Sets `path`'s mode (it holds what other local users must not read).
fn private(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|err| format!("cannot make {} private: {err}", path.display()))
}

fn e(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |err| format!("state database: {what}: {err}")
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
    /// (see `guard`) and the database made 0600, also when an older mln
    /// left them readable.
    pub fn open(dir: &Path) -> Result<State, String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        // A relative state directory would reach libvirt's embedded driver
        // as a relative root, which it refuses.
        let dir = std::path::absolute(dir).map_err(|err| format!("cannot use state directory {}: {err}", dir.display()))?;
        // Below the guarded top directory, QEMU (another user) must pass
        // through `projects` and `templates`; `locks` is mln's alone.
        for (sub, mode) in [("", 0o700), ("projects", 0o755), ("locks", 0o700), ("templates", 0o755)] {
            let d = dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&d)
                .map_err(|err| format!("cannot create {}: {err}", d.display()))?;
        }
        guard(&dir)?;
        private(&dir.join("locks"), 0o700)?;
        let db_path = dir.join("mln.db");
        // SQLite makes the file with the process's umask: make it private
        // before SQLite writes anything into it.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&db_path)
            .map_err(|err| format!("cannot open {}: {err}", db_path.display()))?;
        for f in ["mln.db", "mln.db-wal", "mln.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|err| format!("cannot make {} private: {err}", p.display()))?;
            }
        }
        let db = Connection::open(&db_path).map_err(e("open"))?;
        // Several mln processes may use one database (different projects):
        // wait for each other's writes instead of failing.
        db.busy_timeout(std::time::Duration::from_secs(30)).map_err(e("busy timeout"))?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(e("WAL"))?;
        db.execute_batch(SCHEMA).map_err(e("schema"))?;
        Ok(State { dir, db: Mutex::new(db) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// A host's directory: `projects/PROJECT/HOST`, proven to lie inside
    /// the state directory (see [`crate::name::inside`]).
    pub fn host_dir(&self, project: &str, host: &str) -> Result<PathBuf, String> {
        crate::name::inside(&self.dir, &["projects", project, host]).map_err(|err| err.to_string())
    }
    pub fn project_dir(&self, project: &str) -> Result<PathBuf, String> {
        crate::name::inside(&self.dir, &["projects", project]).map_err(|err| err.to_string())
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

    /// Only one mln works on a project at a time.
    pub fn lock(&self, project: &str) -> Result<ProjectLock, String> {
        let path = crate::name::inside(&self.dir, &["locks", &format!("{project}.lock")]).map_err(|err| err.to_string())?;
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

    pub fn project(&self, name: &str) -> Result<Option<ProjectRow>, String> {
        self.db()
            .query_row("SELECT name, state, file, connect, plan_json FROM projects WHERE name = ?1", [name], |r| {
                Ok(ProjectRow { name: r.get(0)?, state: r.get(1)?, file: r.get(2)?, connect: r.get(3)?, plan_json: r.get(4)? })
            })
            .optional()
            .map_err(e("read project"))
    }

    pub fn projects(&self) -> Result<Vec<ProjectRow>, String> {
        let db = self.db();
        let mut st = db.prepare("SELECT name, state, file, connect, plan_json FROM projects ORDER BY name").map_err(e("list"))?;
        let rows = st
            .query_map([], |r| {
                Ok(ProjectRow { name: r.get(0)?, state: r.get(1)?, file: r.get(2)?, connect: r.get(3)?, plan_json: r.get(4)? })
            })
            .map_err(e("list"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(e("list"))
    }

    pub fn save_project(&self, row: &ProjectRow) -> Result<(), String> {
        self.db()
            .execute(
                "INSERT INTO projects (name, state, file, connect, plan_json, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET state = ?2, file = ?3, connect = ?4, plan_json = ?5, updated = ?6",
                params![row.name, row.state, row.file, row.connect, row.plan_json, now()],
            )
            .map(drop)
            .map_err(e("save project"))
    }

    pub fn set_state(&self, project: &str, state: &str) -> Result<(), String> {
        self.db()
            .execute("UPDATE projects SET state = ?2, updated = ?3 WHERE name = ?1", params![project, state, now()])
            .map(drop)
            .map_err(e("set state"))
    }

    /// Records a resource *before* it is made, so an interruption leaves a
    /// record of everything that may exist (remove tolerates what does not).
    pub fn record(&self, project: &str, r: &Resource) -> Result<(), String> {
        self.record_all(project, std::slice::from_ref(r))
    }

    /// Records several resources in one transaction (one sync, not many).
    pub fn record_all(&self, project: &str, rs: &[Resource]) -> Result<(), String> {
        let mut db = self.db();
        let tx = db.transaction().map_err(e("record resources"))?;
        for r in rs {
            tx.execute(
                "INSERT OR IGNORE INTO resources (project, host, kind, ident) VALUES (?1, ?2, ?3, ?4)",
                params![project, r.host, r.kind, r.ident],
            )
            .map_err(e("record resources"))?;
        }
        tx.commit().map_err(e("record resources"))
    }

    /// Whether this exact resource is recorded for the project.
    pub fn has_resource(&self, project: &str, kind: &str, ident: &str) -> Result<bool, String> {
        self.db()
            .query_row(
                "SELECT 1 FROM resources WHERE project = ?1 AND kind = ?2 AND ident = ?3 LIMIT 1",
                params![project, kind, ident],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(e("read resource"))
    }

    pub fn resources(&self, project: &str) -> Result<Vec<Resource>, String> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT host, kind, ident FROM resources WHERE project = ?1 ORDER BY host, kind, ident")
            .map_err(e("resources"))?;
        let rows = st
            .query_map([project], |r| Ok(Resource { host: r.get(0)?, kind: r.get(1)?, ident: r.get(2)? }))
            .map_err(e("resources"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(e("resources"))
    }

    pub fn forget_resource(&self, project: &str, r: &Resource) -> Result<(), String> {
        self.db()
            .execute(
                "DELETE FROM resources WHERE project = ?1 AND host = ?2 AND kind = ?3 AND ident = ?4",
                params![project, r.host, r.kind, r.ident],
            )
            .map(drop)
            .map_err(e("forget resource"))
    }

    pub fn forget_project(&self, project: &str) -> Result<(), String> {
        let db = self.db();
        db.execute("DELETE FROM resources WHERE project = ?1", [project]).map_err(e("forget"))?;
        db.execute("DELETE FROM projects WHERE name = ?1", [project]).map_err(e("forget"))?;
        Ok(())
    }

    pub fn journal(&self, project: &str, op: &str, host: Option<&str>, ok: bool, message: &str) {
        // The journal is a record for people; failing to write it must not
        // fail the operation it describes.
        let _ = self.db().execute(
            "INSERT INTO journal (at, project, op, host, ok, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now(), project, op, host, ok, message],
        );
    }

    pub fn fabric_project(&self, name: &str) -> Result<Option<FabricRow>, String> {
        let row = self
            .db()
            .query_row("SELECT name, state, file, plan_json, servers_json FROM fabric_projects WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?))
            })
            .optional()
            .map_err(e("read fabric project"))?;
        Ok(row.map(|(name, state, file, plan_json, servers)| FabricRow { name, state, file, plan_json, servers: serde_json::from_str(&servers).unwrap_or_default() }))
    }

    pub fn fabric_projects(&self) -> Result<Vec<FabricRow>, String> {
        let names: Vec<String> = {
            let db = self.db();
            let mut st = db.prepare("SELECT name FROM fabric_projects ORDER BY name").map_err(e("list"))?;
            let rows = st.query_map([], |r| r.get(0)).map_err(e("list"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(e("list"))?
        };
        names.iter().filter_map(|n| self.fabric_project(n).transpose()).collect()
    }

    pub fn save_fabric_project(&self, row: &FabricRow) -> Result<(), String> {
        let servers = serde_json::to_string(&row.servers).map_err(|err| err.to_string())?;
        self.db()
            .execute(
                "INSERT INTO fabric_projects (name, state, file, plan_json, servers_json, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET state = ?2, file = ?3, plan_json = ?4, servers_json = ?5, updated = ?6",
                params![row.name, row.state, row.file, row.plan_json, servers, now()],
            )
            .map(drop)
            .map_err(e("save fabric project"))
    }

    pub fn forget_fabric_project(&self, name: &str) -> Result<(), String> {
        self.db().execute("DELETE FROM fabric_projects WHERE name = ?1", [name]).map(drop).map_err(e("forget fabric project"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> ProjectRow {
        ProjectRow { name: name.into(), state: "building".into(), file: "p.mln".into(), connect: "test:///default".into(), plan_json: "{}".into() }
    }

    #[test]
    fn projects_and_resources_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = State::open(dir.path()).unwrap();
            s.save_project(&row("p")).unwrap();
            let r = Resource { host: "a".into(), kind: "domain".into(), ident: "a.p".into() };
            s.record("p", &r).unwrap();
            s.record("p", &r).unwrap(); // twice is once
            s.set_state("p", "built").unwrap();
        }
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.project("p").unwrap().unwrap().state, "built");
        assert_eq!(s.resources("p").unwrap().len(), 1);
        assert!(s.has_resource("p", "domain", "a.p").unwrap());
        assert!(!s.has_resource("p", "domain", "b.p").unwrap());
        s.forget_project("p").unwrap();
        assert!(s.project("p").unwrap().is_none());
        assert!(s.resources("p").unwrap().is_empty());
    }

    #[test]
    fn a_project_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let held = s.lock("p").unwrap();
        let err = s.lock("p").unwrap_err();
        assert!(err.contains("another mln"), "{err}");
        assert!(s.lock("q").is_ok(), "other projects are not blocked");
        drop(held);
        assert!(s.lock("p").is_ok());
    }
}
