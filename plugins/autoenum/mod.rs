//! `autoenum`: stamps out N hosts inheriting one superclass, with addresses
//! and service hosts dealt out in order.
//!
//! ```text
//! autoenum [NAME] {
//!     superclass hosts        # required
//!     numhosts 36             # required
//!     hostprefix node         # default `node`
//!     net 128.39.74.0         # with `address auto`; `/16` etc. for more
//!                             # than one octet (default /24, as in MLN)
//!     address auto
//!     addresses_begin 150     # default 1
//!     service_hosts { srv1 4; srv2; srv3 all }
//!     autouser CRYPT-HASH     # a user named after each host
//!     macs { #include macs.txt }  # bare-metal nodes: one MAC each, in order
//! }
//! ```

use crate::diag::Diagnostic;
use crate::name::NameKind;
use crate::plan::values;
use crate::plugin::{Context, Declaration, ExpandCtx, Plugin, PluginBlock};
use crate::schema::{suggest, Keyword, Kind, LineTy, Schema, Ty};
use crate::source::Span;
use crate::definitions::{Def, DefKind, Made, Recipe, Section, Text, ValueDef, GLOBAL};
use indexmap::IndexMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub struct Autoenum;

/// Hosts per block at most: a guard against `numhosts 999999999`.
pub const MAX_HOSTS: u64 = 100_000;

fn schema() -> Schema {
    Schema::new("autoenum")
        .with("superclass", Kind::Value(Ty::Name))
        .with("numhosts", Kind::Value(Ty::Int))
        .with("hostprefix", Kind::Value(Ty::Name))
        .with("net", Kind::Value(Ty::Ipv4))
        .with("address", Kind::Value(Ty::Name))
        .with("addresses_begin", Kind::Value(Ty::Int))
        .with("service_hosts", Kind::Lines(LineTy::ServiceHosts))
        .with("autouser", Kind::Value(Ty::Hash))
        .with("macs", Kind::Lines(LineTy::Words))
}

impl Plugin for Autoenum {
    fn name(&self) -> &str {
        "autoenum"
    }

    fn declaration(&self) -> Declaration {
        let kw = Keyword {
            name: "autoenum",
            kind: Kind::Named { schema: Arc::new(schema()), label_required: false },
            alias_of: None,
            plugin: Some("autoenum".into()),
        };
        Declaration { blocks: vec![(Context::Global, kw)] }
    }

    fn expand(&self, ctx: &mut ExpandCtx) {
        for block in std::mem::take(&mut ctx.blocks) {
            if let Some(hosts) = plan_block(&block, ctx) {
                let hosts = Arc::new(hosts);
                ctx.tree.defs.reserve(hosts.count as usize);
                for index in 0..hosts.count {
                    let name = hosts.name(index);
                    if let Some(prev) = ctx.tree.find(DefKind::Host, &name) {
                        let prev_span = ctx.tree.def(prev).name_span;
                        ctx.diags.push(
                            Diagnostic::error("mln::duplicate_definition", format!("host `{name}` is defined twice"))
                                .label(block.span, "autoenum makes it here")
                                .label(prev_span, "and it is defined here")
                                .help("change `hostprefix`, or rename the other host"),
                        );
                        continue;
                    }
                    ctx.add_host(Def {
                        kind: DefKind::Host,
                        name,
                        name_span: block.span,
                        section: Section::default(),
                        made: Some(Made { recipe: hosts.clone(), index }),
                        vars: IndexMap::new(),
                        plugin: Some("autoenum".into()),
                    });
                }
            }
        }
    }
}

/// One block's hosts, each host's statements made when it is resolved
/// (`Recipe`): a hundred bytes a host instead of a section each.
#[derive(Debug)]
struct Hosts {
    count: u32,
    prefix: String,
    /// Digits in a host's number: all numbers have the width of the last.
    width: usize,
    /// The block's span: where every made statement points.
    span: Span,
    superclass: Option<ValueDef>,
    /// With `address auto`: the network, its mask, the first host's
    /// offset in it, and the span of `address`. Every offset was checked
    /// to lie inside.
    addresses: Option<(Ipv4Addr, Ipv4Addr, u64, Span)>,
    /// The service hosts as written, and each host's index among them
    /// (empty without `service_hosts`).
    service_hosts: Vec<(String, Span)>,
    placement: Vec<u32>,
    macs: Vec<(String, Span)>,
    autouser: Option<(String, Span)>,
}

impl Hosts {
    fn name(&self, index: u32) -> String {
        format!("{}{:0width$}", self.prefix, u64::from(index) + 1, width = self.width)
    }
}

fn lit(t: String, span: Span) -> ValueDef {
    ValueDef { text: Text::Literal(t), span, scope: GLOBAL }
}

impl Recipe for Hosts {
    fn section(&self, index: u32) -> Section {
        let i = index as usize;
        let mut section = Section { span: self.span, entries: Default::default() };
        if let Some(sc) = &self.superclass {
            section.set_value("superclass", sc.clone());
        }
        if let Some((net, mask, begin, span)) = self.addresses {
            // Inside: checked for the whole range when the block was read.
            if let Some(addr) = address_in(net, mask, begin + u64::from(index)) {
                let eth0 = section.named_mut("network", "eth0", self.span);
                eth0.set_value("address", lit(crate::plan::values::ipv4_text(addr), span));
            }
        }
        if let Some((host, span)) = self.placement.get(i).and_then(|k| self.service_hosts.get(*k as usize)) {
            section.set_value("service_host", lit(host.clone(), *span));
        }
        if let Some((mac, span)) = self.macs.get(i) {
            section.set_value("mac", lit(mac.clone(), *span));
        }
        if let Some((hash, span)) = &self.autouser {
            section.push_line("users", lit(format!("{} {hash}", self.name(index)), *span));
        }
        section
    }

    fn superclass(&self) -> Option<&ValueDef> {
        self.superclass.as_ref()
    }
}

fn err(code: &'static str, msg: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::error(code, msg.into()).label(span, "")
}

/// The hosts one autoenum block makes, or None after reporting why not.
fn plan_block(b: &PluginBlock, ctx: &mut ExpandCtx) -> Option<Hosts> {
    // Problems are reported, and the hosts are made anyway without the
    // broken part, so that later stages do not report consequences (a
    // `cluster` head that "does not exist") as problems of their own.
    let s = &b.section;
    let mut ok = true;
    let mut superclass = s.text("superclass");
    if superclass.is_none() {
        ctx.diags.push(
            Diagnostic::error("mln::autoenum::missing", "autoenum needs `superclass NAME`")
                .label(b.span, "in this block")
                .help("the generated hosts inherit everything from that superclass"),
        );
    }
    if let Some(sc) = superclass {
        if ctx.tree.find(DefKind::Superclass, sc).is_none() {
            let names: Vec<&str> = ctx.tree.ids(DefKind::Superclass).map(|id| ctx.tree.def(id).name.as_str()).collect();
            let mut d = err("mln::superclass::unknown", format!("superclass `{sc}` does not exist"), b.span_of("superclass"));
            if let Some(m) = suggest(sc, names.into_iter()) {
                d = d.help(format!("did you mean `{m}`?"));
            }
            ctx.diags.push(d);
            superclass = None;
        }
    }
    let n = match s.value("numhosts") {
        None => {
            ctx.diags.push(
                Diagnostic::error("mln::autoenum::missing", "autoenum needs `numhosts N`")
                    .label(b.span, "in this block")
                    .help("add e.g. `numhosts 36`"),
            );
            None
        }
        Some(v) => match values::uint(&v.text) {
            Ok(n) if (1..=MAX_HOSTS).contains(&n) => Some(n),
            _ => {
                ctx.diags.push(err(
                    "mln::autoenum::numhosts",
                    format!("numhosts must be a whole number from 1 to {MAX_HOSTS}"),
                    v.origin.span,
                ));
                None
            }
        },
    };
    let n = n?;
    let prefix = s.text("hostprefix").unwrap_or("node").to_string();
    let begin = match s.value("addresses_begin") {
        // An offset into an IPv4 network: 32 bits at most.
        Some(v) => match values::uint_in(&v.text, 0, u64::from(u32::MAX), "addresses_begin", "it is an offset into an IPv4 network") {
            Ok(k) => k,
            Err(e) => {
                let code = e.code();
                let e = e.into_bad();
                let mut d = err(code, e.message, v.origin.span);
                if let Some(h) = e.help {
                    d = d.help(h);
                }
                ctx.diags.push(d);
                ok = false;
                1
            }
        },
        None => 1,
    };
    let auto_address = match s.value("address") {
        Some(v) if v.text == "auto" => true,
        Some(v) => {
            ctx.diags.push(
                err("mln::autoenum::address", format!("unknown address mode `{}`", v.text), v.origin.span)
                    .help("the only mode is `address auto`"),
            );
            ok = false;
            false
        }
        None => false,
    };
    let net = s.value("net").and_then(|v| {
        let (addr, prefix) = v.text.split_once('/').unwrap_or((v.text.as_str(), "24"));
        let parsed = values::ipv4(addr).and_then(|a| values::netmask(prefix).map(|m| (a, m)));
        match parsed {
            Ok((a, m)) if (8..=30).contains(&u32::from(m).leading_ones()) => Some((a, m)),
            Ok(_) | Err(_) => {
                let msg = parsed.err().map(|e| e.message).unwrap_or_else(|| "the prefix must be /8 to /30".into());
                ctx.diags.push(err("mln::value::ip", msg, v.origin.span).help("write e.g. `net 10.0.0.0` or `net 10.0.0.0/16`"));
                ok = false;
                None
            }
        }
    });
    if auto_address && net.is_none() && s.value("net").is_none() {
        ctx.diags.push(err("mln::autoenum::missing", "`address auto` needs `net A.B.C.D`", b.span_of("address")));
        ok = false;
    }
    if let (true, Some((_, mask))) = (auto_address, net) {
        // Offsets 1 ..= size-2: neither the network nor the broadcast address.
        let usable = u64::from(!u32::from(mask)).saturating_sub(1);
        // Both at most 2^32: no overflow in u64.
        let last = begin + n - 1;
        if begin == 0 || last > usable {
            let prefix = u32::from(mask).leading_ones();
            ctx.diags.push(
                Diagnostic::error(
                    "mln::autoenum::address_overflow",
                    format!("{n} hosts from address +{begin} need +{begin} to +{last}, past the last usable +{usable} of a /{prefix}"),
                )
                .label(b.span_of("numhosts"), format!("{n} hosts"))
                .label(b.span_of("addresses_begin"), format!("starting at +{begin}"))
                .help(format!(
                    "at most {} hosts fit from +{begin}; a larger subnet (`net A.B.C.D/16`) holds more",
                    (usable + 1).saturating_sub(begin.max(1))
                )),
            );
            ok = false;
        }
    }
    let autouser = match s.value("autouser") {
        Some(v) => match values::password(&v.text, crate::plan::des_hashes(ctx.tree)) {
            Ok(warning) => {
                if let Some(w) = warning {
                    let mut d = Diagnostic::warning("mln::password::weak", w.message).label(v.origin.span, "");
                    if let Some(h) = w.help {
                        d = d.help(h);
                    }
                    ctx.diags.push(d);
                }
                Some((v.text.clone(), v.origin.span))
            }
            Err((code, e)) => {
                let mut d = err(code, e.message, v.origin.span);
                if let Some(h) = e.help {
                    d = d.help(h);
                }
                ctx.diags.push(d);
                ok = false;
                None
            }
        },
        None => None,
    };
    let placement = deal(b, n, ctx);
    let macs = macs(b, n, ctx);
    let width = n.to_string().len();
    // Every name is the prefix and a number of the same width, so the last
    // one stands for all: one report, not one per host.
    let sample = format!("{prefix}{n:0width$}");
    if let Some(mut d) = crate::name::diagnose(NameKind::Host, None, &sample, b.span_of("hostprefix")) {
        d.labels[0].text = format!("autoenum names its hosts `{}` and a number", crate::term::escape(&prefix)).into();
        ctx.diags.push(d);
    }
    let autouser = autouser.and_then(|(hash, span)| match crate::name::diagnose(NameKind::User, None, &sample, span) {
        Some(mut d) => {
            d.labels[0].text = "this makes a user named after each host".into();
            ctx.diags.push(d);
            None
        }
        None => Some((hash, span)),
    });
    let addresses = match (ok, auto_address, net) {
        (true, true, Some((net, mask))) => {
            // The range check above makes this hold; an address outside
            // the net is never handed out.
            let last = begin + n - 1;
            if address_in(net, mask, begin).is_none() || address_in(net, mask, last).is_none() {
                ctx.diags.push(err(
                    "mln::autoenum::address_overflow",
                    format!("hosts would get addresses outside {net}/{}", u32::from(mask).leading_ones()),
                    b.span,
                ));
                None
            } else {
                Some((net, mask, begin, b.span_of("address")))
            }
        }
        _ => None,
    };
    let (service_hosts, placement) = placement.unwrap_or_default();
    Some(Hosts {
        // At most MAX_HOSTS.
        count: n as u32,
        prefix,
        width,
        span: b.span,
        superclass: superclass.map(|sc| lit(sc.to_string(), b.span_of("superclass"))),
        addresses,
        service_hosts,
        placement,
        macs,
        autouser,
    })
}

/// The host address at `offset` in the network of `net`/`mask`: None
/// unless it lies inside, and is neither the network nor the broadcast
/// address.
fn address_in(net: Ipv4Addr, mask: Ipv4Addr, offset: u64) -> Option<Ipv4Addr> {
    let (mask, base) = (u32::from(mask), u32::from(net) & u32::from(mask));
    let addr = base.checked_add(u32::try_from(offset).ok()?)?;
    let inside = addr & mask == base && addr != base && addr != base | !mask;
    inside.then(|| Ipv4Addr::from(addr))
}

/// The service host lines as written, and each host's index among them.
type Placement = (Vec<(String, Span)>, Vec<u32>);

/// The service host of each generated host, in order: `host COUNT` takes
/// that many, a bare `host` one, `host all` the rest: the lines, and each
/// host's index among them (both empty without `service_hosts`).
fn deal(b: &PluginBlock, n: u64, ctx: &mut ExpandCtx) -> Option<Placement> {
    let lines = b.section.lines("service_hosts");
    if lines.is_empty() {
        return Some((vec![], vec![]));
    }
    let mut hosts: Vec<(String, Span)> = Vec::new();
    let mut out: Vec<u32> = Vec::with_capacity(n as usize);
    let mut ok = true;
    for l in lines {
        let (host, count) = match l.words.as_slice() {
            [h] => (h, Some(1)),
            [h, c] if c == "all" => (h, None),
            [h, c] => match values::uint(c) {
                Ok(k) => (h, Some(k)),
                Err(_) => {
                    ctx.diags.push(
                        err("mln::autoenum::service_hosts", format!("`{c}` is not a number of hosts"), l.origin.span)
                            .help("a service host line is `HOST`, `HOST COUNT` or `HOST all`"),
                    );
                    ok = false;
                    continue;
                }
            },
            _ => {
                ctx.diags.push(
                    err("mln::autoenum::service_hosts", "a service host line is `HOST`, `HOST COUNT` or `HOST all`", l.origin.span),
                );
                ok = false;
                continue;
            }
        };
        let remaining = n as usize - out.len().min(n as usize);
        let take = count.map(|c| usize::try_from(c).unwrap_or(usize::MAX).min(remaining)).unwrap_or(remaining);
        if take > 0 {
            out.extend(std::iter::repeat_n(hosts.len() as u32, take));
            hosts.push((host.clone(), l.origin.span));
        }
    }
    if !ok {
        return None;
    }
    if out.len() < n as usize {
        let slots = out.len();
        ctx.diags.push(
            Diagnostic::error(
                "mln::autoenum::too_few_slots",
                format!("{n} hosts but the service hosts take only {slots}"),
            )
            .label(b.span_of("numhosts"), format!("{n} hosts"))
            .label(span_of_lines(lines), format!("{slots} slots"))
            .help("raise a count, add service hosts, or end with `HOST all`"),
        );
        return None;
    }
    Some((hosts, out))
}

/// The MAC of each generated bare-metal node, in order, each with the
/// line it was read from (a `#include`d list, as a servers file is); as
/// many as there are hosts, or none after saying how many are missing.
fn macs(b: &PluginBlock, n: u64, ctx: &mut ExpandCtx) -> Vec<(String, Span)> {
    let lines = b.section.lines("macs");
    if lines.is_empty() {
        return vec![];
    }
    let out: Vec<(String, Span)> = lines.iter().flat_map(|l| l.words.iter().map(|w| (w.clone(), l.origin.span))).collect();
    if (out.len() as u64) < n {
        ctx.diags.push(
            Diagnostic::error("mln::autoenum::too_few_macs", format!("{n} hosts but only {} MACs", out.len()))
                .label(b.span_of("numhosts"), format!("{n} hosts"))
                .label(span_of_lines(lines), format!("{} MACs", out.len()))
                .help("list one MAC per node, or lower `numhosts`"),
        );
        return vec![];
    }
    out
}

/// The lines' span, or the first line's when they come from several files
/// (some `#include`d).
fn span_of_lines(lines: &[crate::resolve::RValue]) -> Span {
    let (a, b) = (lines[0].origin.span, lines[lines.len() - 1].origin.span);
    if a.file == b.file {
        a.to(b)
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::address_in;
    use std::net::Ipv4Addr;

    #[test]
    fn addresses_stay_inside_their_network() {
        let (net, m24) = (Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(address_in(net, m24, 1), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(address_in(net, m24, 254), Some(Ipv4Addr::new(10, 0, 0, 254)));
        for off in [0, 255, 256, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(address_in(net, m24, off), None, "+{off}");
        }
        // The top of the address space: no wrap to 0.0.0.0.
        assert_eq!(address_in(Ipv4Addr::new(255, 255, 255, 0), m24, 300), None);
    }
}
