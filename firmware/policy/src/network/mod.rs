//! Networks inside the hypervisor: each network is a [`Switch`] whose ports are the member
//! partitions' virtio-net cards ([`VirtioNet`]), and [`deliver`] carries a frame from one
//! card to the cards the switch chose.
//!
//! The firmware's part, per transmit pass of a sending card: take the sender's frames
//! ([`VirtioNet::take_transmits`], a bounded batch), then for each frame take the switch's
//! lock only around [`Switch::route`], and call [`deliver`] with no switch lock held, reaching
//! each receiver through [`Ports::with_port`] (its device lock and its RAM). Afterwards it
//! drives each touched card's interrupt line ([`VirtioNet::interrupt_asserted`]).
//!
//! What this guarantees:
//! - The sender never waits on a receiver beyond one copy: delivery is a copy into a buffer
//!   the receiver already posted, or a drop. Nothing is queued in the hypervisor, so no
//!   receiver can make the hypervisor hold memory or the sender stall.
//! - A receiver that posts no buffers (or bad ones), has its link down, or is not running only
//!   loses frames: each is counted in its [`NicCounters`](crate::devices::virtio::net::NicCounters)
//!   (or, for a member that is not running, in [`Delivery::not_running`]).
//! - Every frame routed is accounted for once per destination: [`Delivery`] counts it
//!   delivered or dropped there; a frame the switch drops is counted in the switch's
//!   [`SwitchCounters`](switch::SwitchCounters).
//! - Work per frame is bounded: one route (at most [`switch::MAX_ENTRIES`] entries scanned on
//!   an eviction) and one copy per other port.

pub mod switch;

#[cfg(test)]
mod tests;

pub use switch::{DropReason, Route, Switch};

use crate::devices::virtio::net::VirtioNet;
use crate::devices::virtio::net_offload::Frame;
use crate::devices::virtio::QueueMemory;

/// The member cards of one network, one per switch port.
pub trait Ports {
    /// The number of ports.
    fn port_count(&self) -> usize;

    /// Runs `f` on port `port`'s card and its partition's RAM; `None` when that member is not
    /// running (then the frame to it is dropped).
    fn with_port<R>(
        &self,
        port: usize,
        f: impl FnOnce(&mut VirtioNet, &dyn QueueMemory) -> R,
    ) -> Option<R>;
}

/// What became of one frame at its destinations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Destinations whose receive buffer now holds the frame.
    pub delivered: usize,
    /// Destinations that dropped it: their card refused it (counted there), or the member
    /// was not running.
    pub dropped: usize,
    /// Of `dropped`, the destinations whose member was not running (or that do not exist).
    pub not_running: usize,
}

impl Delivery {
    /// The destinations the frame was meant for.
    pub fn destinations(&self) -> usize {
        self.delivered + self.dropped
    }
}

/// Copies `frame`, sent on port `from` and routed to `route`, into each destination's next
/// receive buffer ([`VirtioNet::receive`]). A frame the switch dropped has no destinations.
pub fn deliver(ports: &impl Ports, from: usize, route: Route, frame: &Frame) -> Delivery {
    let mut delivery = Delivery::default();
    match route {
        Route::Port(port) if port != from => deliver_to(ports, port, frame, &mut delivery),
        Route::Port(_) | Route::Drop(_) => {}
        Route::Flood => {
            for port in (0..ports.port_count()).filter(|&port| port != from) {
                deliver_to(ports, port, frame, &mut delivery);
            }
        }
    }
    delivery
}

fn deliver_to(ports: &impl Ports, port: usize, frame: &Frame, delivery: &mut Delivery) {
    match ports.with_port(port, |nic, memory| nic.receive(memory, frame)) {
        Some(Ok(())) => delivery.delivered += 1,
        Some(Err(_)) => delivery.dropped += 1,
        None => {
            delivery.dropped += 1;
            delivery.not_running += 1;
        }
    }
}
