//! Backends: what turns a plan into running machines: libvirt domain
//! definitions, a connection to libvirt (embedded QEMU driver by default),
//! the switches' bridges and the VXLAN ports joining them, templates, and the KVM probe. The lifecycle that
//! drives them is `crate::runtime`, through the machine traits that
//! `machines` implements.

pub mod bridge;
pub mod domain;
pub mod glance;
pub mod kvm;
pub mod libvirt;
pub mod machines;
pub mod migrate;
pub mod probes;
mod relocate;
pub mod steady_cpu;
mod provision;
pub mod template;
mod update;
pub mod vxlan;
