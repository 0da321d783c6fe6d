//! An upgrade as people read it, like `terraform plan`: per host its
//! class, each changed key with old and new value, and why.

use super::classify::{show, Class};
use super::diff::Upgrade;
use std::fmt::Write;

fn mark(c: Class) -> char {
    match c {
        Class::Unchanged => '=',
        Class::Live | Class::GuestConfig => '~',
        Class::Restart | Class::Disk => '!',
        Class::Migrate => '>',
        Class::Add => '+',
        Class::Remove => '-',
    }
}

/// The whole preview; unchanged hosts are counted, not listed.
pub fn preview(u: &Upgrade) -> String {
    let esc = |s: &str| crate::term::escape(s).into_owned();
    let mut out = String::new();
    let counts: Vec<String> = u.counts().iter().map(|(c, n)| format!("{n} {c}")).collect();
    let _ = writeln!(out, "project {}: {}", esc(&u.project), if counts.is_empty() { "no hosts".into() } else { counts.join(", ") });
    let width = u.hosts.iter().filter(|h| h.class != Class::Unchanged).map(|h| h.host.len()).max().unwrap_or(0);
    for h in u.hosts.iter().filter(|h| h.class != Class::Unchanged) {
        let _ = writeln!(out, "  {} {:width$}  {}", mark(h.class), esc(&h.host), h.class);
        for c in &h.changes {
            let _ = writeln!(out, "      {}: {} -> {}", esc(&c.key), esc(&show(&c.old)), esc(&show(&c.new)));
        }
        if !h.why.is_empty() {
            let _ = writeln!(out, "      why: {}", esc(&h.why));
        }
    }
    for c in &u.project_changes {
        let _ = writeln!(out, "  project {} changed (recorded; no machine is touched for it)", esc(&c.key));
    }
    if u.is_empty() {
        out.push_str("  nothing to do\n");
    }
    out
}
