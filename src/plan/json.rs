//! `mln plan --json`'s text: serde_json's pretty layout byte for byte,
//! with the hosts written on every core. Writing 100,000 hosts took about
//! a quarter of `plan --json` on one core (book: benchmarks, planning).

use super::model::{Host, Plan};
use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};
use std::io::{self, Write};
use std::sync::mpsc;

/// Hosts per batch a worker writes before handing it over: big enough that
/// handing over is rare, small enough that the batches in flight stay a few
/// megabytes (the whole text of 100,000 hosts would double the peak).
const BATCH: usize = 256;

/// Writes `plan` as `serde_json::to_writer_pretty` would.
pub fn write_pretty(plan: &Plan, out: &mut impl Write) -> io::Result<()> {
    // Every field, by name: a new field in `Plan` fails to compile here
    // instead of going missing from the output.
    let Plan { project, hosts, switches, hooks } = plan;
    out.write_all(b"{\n  \"project\": ")?;
    nested(&mut *out, project)?;
    out.write_all(b",\n  \"hosts\": ")?;
    if hosts.is_empty() {
        out.write_all(b"[]")?;
    } else {
        out.write_all(b"[")?;
        write_hosts(hosts, out)?;
        out.write_all(b"\n  ]")?;
    }
    out.write_all(b",\n  \"switches\": ")?;
    nested(&mut *out, switches)?;
    out.write_all(b",\n  \"hooks\": ")?;
    nested(&mut *out, hooks)?;
    out.write_all(b"\n}")
}

/// A field's value of the top object (indented one level).
fn nested(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    value.serialize(&mut Serializer::with_formatter(out, Indented::at(1))).map_err(io::Error::from)
}

/// Each host as an element of the top object's array (two levels in),
/// batches written by workers, in order.
fn write_hosts(hosts: &[Host], out: &mut impl Write) -> io::Result<()> {
    let batches: Vec<&[Host]> = hosts.chunks(BATCH).collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = cores.min(batches.len());
    if workers <= 1 {
        let mut buf = Vec::new();
        return batches.iter().enumerate().try_for_each(|(i, b)| {
            buf.clear();
            render(b, i == 0, &mut buf)?;
            out.write_all(&buf)
        });
    }
    std::thread::scope(|s| {
        // One channel per worker, one batch in flight on each: worker k
        // writes batches k, k + workers...; they are taken in turn.
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::sync_channel::<io::Result<Vec<u8>>>(1)).unzip();
        for (k, tx) in senders.into_iter().enumerate() {
            let batches = &batches;
            s.spawn(move || {
                for i in (k..batches.len()).step_by(workers) {
                    let mut buf = Vec::with_capacity(BATCH * 2048);
                    let r = render(batches[i], i == 0, &mut buf).map(|()| buf);
                    let failed = r.is_err();
                    // The writer gone (a write failed): nothing to do.
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            });
        }
        for i in 0..batches.len() {
            let buf = receivers[i % workers].recv().map_err(|_| io::Error::other("a plan writer stopped"))??;
            // Returning drops the receivers, which ends the workers.
            out.write_all(&buf)?;
        }
        Ok(())
    })
}

fn render(batch: &[Host], first: bool, buf: &mut Vec<u8>) -> io::Result<()> {
    for (j, h) in batch.iter().enumerate() {
        buf.extend_from_slice(if first && j == 0 { b"\n    " } else { b",\n    " });
        h.serialize(&mut Serializer::with_formatter(&mut *buf, Indented::at(2))).map_err(io::Error::from)?;
    }
    Ok(())
}

/// serde_json's `PrettyFormatter` (two spaces) started `level` levels in:
/// its own always starts at the left margin.
struct Indented {
    level: usize,
    has_value: bool,
}

impl Indented {
    fn at(level: usize) -> Indented {
        Indented { level, has_value: false }
    }

    fn indent<W: ?Sized + Write>(&self, w: &mut W) -> io::Result<()> {
        const SPACES: &[u8; 32] = b"                                ";
        let mut n = self.level * 2;
        while n > 0 {
            let k = n.min(SPACES.len());
            w.write_all(&SPACES[..k])?;
            n -= k;
        }
        Ok(())
    }
}

impl Formatter for Indented {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.level -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.level -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Switch;

    fn host(i: usize) -> Host {
        let text = format!(
            r#"{{"name":"h{i}","kind":"kvm","superclass":null,"service_host":"s1","memory_mib":512,"vcpus":1,"cpus":null,
            "template":"t","disk_mib":null,"free_space_mib":null,"swap_mib":null,"disk_mode":"linked","lvm_vg":null,
            "lvm_options":null,"boot_order":1,"kernel":null,"ramdisk":null,"hvm":false,"vnc_display":null,
            "vnc_password":null,"description":"quote \" and\nnewline","interfaces":[{{"name":"eth0","address":"10.0.0.{}",
            "dhcp":false,"netmask":"255.255.255.0","gateway":null,"broadcast":null,"mac":"00:16:3e:00:00:01",
            "switch":"lan","bridge":null}}],"nameservers":[],"root_password_hash":null,"users":[],"groups":[],
            "startup":["a","b"],"shutdown":[],"files":[],"mounts":[],"modules":[],
            "plugins":{{"p":{{"files":[],"startup":["x"]}}}},"plugin_settings":{{"p":{{"k":[1,{{"n":null}}],"e":{{}}}}}}}}"#,
            i % 250
        );
        serde_json::from_str(&text).expect("a host")
    }

    fn plan(n: usize) -> Plan {
        let mut hooks = indexmap::IndexMap::new();
        hooks.insert("beforeProjectStart".to_string(), vec!["echo \"hi\"".to_string()]);
        Plan {
            project: "p\u{e9}\"x".into(),
            hosts: (0..n).map(host).collect(),
            switches: vec![Switch { name: "lan".into(), bridge: "lan.p".into(), service_host: None, attach: false, segment: None }],
            hooks,
        }
    }

    fn ours(p: &Plan) -> Vec<u8> {
        let mut out = Vec::new();
        write_pretty(p, &mut out).unwrap();
        out
    }

    #[test]
    fn same_text_as_serde_json_pretty() {
        // None, one, one batch and a part, several batches per worker.
        for n in [0, 1, BATCH + 3, BATCH * 5 + 1] {
            let p = plan(n);
            let theirs = serde_json::to_vec_pretty(&p).unwrap();
            assert_eq!(String::from_utf8(ours(&p)).unwrap(), String::from_utf8(theirs).unwrap(), "{n} hosts");
        }
    }

    #[test]
    fn empty_collections_and_deep_indents() {
        let mut p = plan(1);
        p.switches.clear();
        p.hooks.clear();
        let mut deep = serde_json::json!("leaf");
        for _ in 0..40 {
            deep = serde_json::json!([deep]);
        }
        p.hosts[0].plugin_settings.insert("deep".into(), deep);
        assert_eq!(ours(&p), serde_json::to_vec_pretty(&p).unwrap());
    }

    #[test]
    fn a_failing_writer_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(write_pretty(&plan(BATCH * 4), &mut Full).is_err());
    }
}
