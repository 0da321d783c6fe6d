//! The database schema, versioned with SQLite's `user_version`, and the
//! migrations from every earlier version. Version 0 is what mln wrote
//! before the schema had a version (tests/fixtures/state-v0.sql).

use super::error::{db, StateError};
use rusqlite::{Connection, TransactionBehavior};

pub const VERSION: i64 = 3;

const V0: &str = "
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

/// 0 -> 1: one record per project and one per host. A project spread over service hosts
/// was two rows (its whole plan in `fabric_projects`, the local share in
/// `projects`); now it is one row with the whole plan and its places, and
/// the local share's resources stay where they are. `state` becomes
/// `phase`. Each host gets a record of its own (where it is, its phase),
/// from its project's plan and phase.
const V1: &str = "
ALTER TABLE projects RENAME COLUMN state TO phase;
ALTER TABLE projects ADD COLUMN places_json TEXT NOT NULL DEFAULT '[]';
CREATE TABLE IF NOT EXISTS fabric_projects (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, file TEXT NOT NULL,
    plan_json TEXT NOT NULL, servers_json TEXT NOT NULL, updated INTEGER NOT NULL
);
INSERT INTO projects (name, phase, file, connect, plan_json, updated, places_json)
    SELECT name, state, file, '', plan_json, updated, servers_json FROM fabric_projects WHERE true
    ON CONFLICT(name) DO UPDATE SET
        phase = excluded.phase, file = excluded.file, plan_json = excluded.plan_json,
        updated = excluded.updated, places_json = excluded.places_json;
DROP TABLE fabric_projects;
CREATE TABLE IF NOT EXISTS hosts (
    project TEXT NOT NULL,
    host TEXT NOT NULL,
    place TEXT NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (project, host)
);
INSERT INTO hosts (project, host, place, phase)
    SELECT p.name, json_extract(h.value, '$.name'), coalesce(json_extract(h.value, '$.service_host'), ''), p.phase
    FROM projects p, json_each(p.plan_json, '$.hosts') h WHERE true
    ON CONFLICT DO NOTHING;
";

/// 1 -> 2: bare metal. The environment library (one row per version of an
/// environment, its description with every file's SHA-256 as JSON; the
/// files are under `environments/`), and each deployment step of each
/// node, for `mln stats`.
const V2: &str = "
CREATE TABLE IF NOT EXISTS environments (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    env_json TEXT NOT NULL,
    added INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS deploy_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    project TEXT NOT NULL,
    host TEXT NOT NULL,
    deployment TEXT NOT NULL,
    step TEXT NOT NULL,
    variant TEXT NOT NULL,
    retries INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deploy_steps_host ON deploy_steps (host);
";

/// 2 -> 3: which reboot acted in each deployment step (its level and the
/// power control that did it: the node's driver, or the power-command
/// level below it); empty for the steps recorded before.
const V3: &str = "
ALTER TABLE deploy_steps ADD COLUMN power_level TEXT NOT NULL DEFAULT '';
ALTER TABLE deploy_steps ADD COLUMN power_driver TEXT NOT NULL DEFAULT '';
";

/// Brings the database to [`VERSION`], in one transaction. A database
/// already there is only read: every `mln` opens it, often several at once
/// (`mln ssh` beside `mln exec`), and a write on each open would make them
/// queue for nothing. A migration takes the write lock first (`BEGIN
/// IMMEDIATE`) and reads the version again under it: a deferred
/// transaction that reads and then writes must upgrade its read lock, and
/// when another process writes in between SQLite answers "database is
/// locked" at once, without waiting out the busy timeout.
pub fn migrate(conn: &mut Connection) -> Result<(), StateError> {
    let version = |c: &Connection| -> Result<i64, StateError> { c.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db("schema version")) };
    let found = version(conn)?;
    if found > VERSION {
        return Err(StateError::TooNew { found, known: VERSION });
    }
    if found == VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db("migrate"))?;
    let found = version(&tx)?;
    if found > VERSION {
        return Err(StateError::TooNew { found, known: VERSION });
    }
    if found == VERSION {
        return Ok(());
    }
    if found < 1 {
        tx.execute_batch(V0).map_err(db("schema"))?;
        tx.execute_batch(V1).map_err(db("migrate to schema 1"))?;
    }
    if found < 2 {
        tx.execute_batch(V2).map_err(db("migrate to schema 2"))?;
    }
    if found < 3 {
        tx.execute_batch(V3).map_err(db("migrate to schema 3"))?;
    }
    tx.pragma_update(None, "user_version", VERSION).map_err(db("schema version"))?;
    tx.commit().map_err(db("migrate"))
}
