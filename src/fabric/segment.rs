//! Which switches span several places, and what each place's share is
//! told about them: a VXLAN network per (project, switch), reaching the
//! other places at their fabric addresses (`crate::backend::vxlan` makes
//! it). Only the manager knows every place, so it fills this in; an agent
//! uses its share as it gets it.

use crate::plan::{Plan, Segment};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The VXLAN network identifier of a project's switch: 24 bits of a hash,
/// so the same switch name in two projects gets two networks (a clash is
/// refused by the kernel on a machine both use, never shared).
pub fn vni(project: &str, switch: &str) -> u32 {
    let d = Sha256::digest(format!("mln vxlan {project}/{switch}").as_bytes());
    let v = u32::from_be_bytes([0, d[0], d[1], d[2]]);
    v.max(1)
}

/// Gives each share's switches their segment: none for a switch on one
/// place only, else this place's address and every other place's.
/// `addresses[i]` is share i's place's fabric address (None: unknown, so
/// that place is not joined). Returns notes for what could not be joined.
pub fn join(shares: &mut [(Option<String>, Plan)], addresses: &[Option<IpAddr>]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (_, share) in shares.iter() {
        for sw in share.switches.iter().filter(|s| !s.attach) {
            if !names.contains(&sw.name) {
                names.push(sw.name.clone());
            }
        }
    }
    for name in names {
        let holders: Vec<usize> = (0..shares.len()).filter(|&i| shares[i].1.switches.iter().any(|s| s.name == name && !s.attach)).collect();
        for &i in &holders {
            let segment = match addresses.get(i).copied().flatten() {
                Some(local) if holders.len() > 1 => {
                    let peers: Vec<IpAddr> = holders.iter().filter(|&&j| j != i).filter_map(|&j| addresses.get(j).copied().flatten()).collect();
                    let vni = vni(&shares[i].1.project, &name);
                    (!peers.is_empty()).then_some(Segment { vni, local, peers })
                }
                None if holders.len() > 1 => {
                    let place = shares[i].0.as_deref().unwrap_or("this machine");
                    notes.push(format!("switch {name}: no fabric address is known for {place}: its guests are not joined to the switch's other machines"));
                    None
                }
                _ => None,
            };
            if let Some(sw) = shares[i].1.switches.iter_mut().find(|s| s.name == name) {
                sw.segment = segment;
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Switch;

    fn share(place: Option<&str>, project: &str, switches: &[&str]) -> (Option<String>, Plan) {
        let switches = switches
            .iter()
            .map(|s| Switch { name: s.to_string(), bridge: format!("{s}.{project}"), service_host: None, attach: false, segment: None })
            .collect();
        (place.map(str::to_string), Plan { project: project.into(), hosts: vec![], switches, hooks: Default::default() })
    }
    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_switch_on_several_places_is_joined_to_every_other_one() {
        let mut shares = vec![share(Some("h1"), "p", &["lan", "solo"]), share(Some("h2"), "p", &["lan"]), share(Some("h3"), "p", &["lan"])];
        let notes = join(&mut shares, &[ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]);
        assert!(notes.is_empty());
        let seg = |i: usize, s: &str| shares[i].1.switches.iter().find(|x| x.name == s).unwrap().segment.clone();
        let a = seg(0, "lan").unwrap();
        assert_eq!((a.local, a.peers.clone()), (ip("10.0.0.1").unwrap(), vec![ip("10.0.0.2").unwrap(), ip("10.0.0.3").unwrap()]));
        let b = seg(1, "lan").unwrap();
        assert_eq!((b.local, b.peers), (ip("10.0.0.2").unwrap(), vec![ip("10.0.0.1").unwrap(), ip("10.0.0.3").unwrap()]));
        assert_eq!(a.vni, b.vni);
        assert_eq!(seg(0, "solo"), None, "a switch on one place needs no segment");
    }

    #[test]
    fn two_projects_with_the_same_switch_name_get_different_networks() {
        assert_ne!(vni("one", "lan"), vni("two", "lan"));
        assert_ne!(vni("one", "lan"), vni("one", "lan2"));
        for (p, s) in [("a", "b"), ("x", "y"), ("project", "switch")] {
            assert!((1..=0x00ff_ffff).contains(&vni(p, s)));
        }
    }

    #[test]
    fn a_place_without_an_address_is_left_out_and_said() {
        let mut shares = vec![share(None, "p", &["lan"]), share(Some("h2"), "p", &["lan"]), share(Some("h3"), "p", &["lan"])];
        let notes = join(&mut shares, &[None, ip("10.0.0.2"), ip("10.0.0.3")]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("this machine"));
        assert_eq!(shares[0].1.switches[0].segment, None);
        assert_eq!(shares[1].1.switches[0].segment.as_ref().unwrap().peers, vec![ip("10.0.0.3").unwrap()]);
    }

    #[test]
    fn an_attached_bridge_is_never_joined() {
        let mut shares = vec![share(Some("h1"), "p", &["lan"]), share(Some("h2"), "p", &["lan"])];
        for s in shares.iter_mut() {
            s.1.switches[0].attach = true;
        }
        join(&mut shares, &[ip("10.0.0.1"), ip("10.0.0.2")]);
        assert!(shares.iter().all(|s| s.1.switches[0].segment.is_none()));
    }
}
