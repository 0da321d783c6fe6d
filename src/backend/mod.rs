//! Backends: what turns a plan into running machines. Today: libvirt
//! domain definitions and a connection to libvirt (embedded QEMU driver by
//! default). The build/start/stop lifecycle on top of them is not written
//! yet (issue 3).

pub mod bridge;
pub mod domain;
pub mod kvm;
pub mod libvirt;
pub mod template;
