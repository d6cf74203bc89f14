//! Host console input: bytes typed on COM1 go to one partition's virtual UART at a time,
//! switched with Ctrl-A and a digit, or to the monitor shell after Ctrl-A `m` (see
//! `numavisor_policy::vmm::console_input`).

use super::{interrupts, monitor, Hypervisor};
use crate::platform::console::serial;
use numavisor_policy::vmm::console_input::{InputSwitch, Routed};
use numavisor_policy::vmm::monitor::LineEditor;

/// Moves whatever was typed to the selected partition; any CPU may call it, one at a time.
pub fn poll_console_input(hv: &Hypervisor) {
    let Some(mut guard) = hv.input.try_lock() else {
        return;
    };
    // At most a FIFO's worth per call, so one CPU is not kept here.
    for _ in 0..16 {
        let Some(byte) = serial::try_read_byte() else {
            return;
        };
        let all = hv.partitions();
        let (switch, editor) =
            guard.get_or_insert_with(|| (InputSwitch::new(all.len()), LineEditor::default()));
        match switch.route(byte) {
            Routed::Deliver { index, byte } => {
                let Some(partition) = all.get(index) else {
                    continue;
                };
                if partition.control.ended() {
                    continue;
                }
                let (accepted, delivery) = partition.devices.lock().push_input(byte);
                if !accepted {
                    log::warn!(
                        "partition \"{}\": console input full; byte dropped",
                        partition.name()
                    );
                }
                if let Some(delivery) = delivery {
                    interrupts::deliver_ioapic(partition, delivery);
                }
            }
            Routed::Switched(Some(index)) => {
                let name = all.get(index).map_or("?", |p| p.name());
                log::info!("console input now goes to partition \"{name}\" (Ctrl-A 0 for none)");
            }
            Routed::Switched(None) => log::info!("console input goes to no partition"),
            Routed::ToMonitor => monitor::entered(),
            Routed::Monitor(byte) => monitor::typed(hv, editor, byte),
            Routed::Nothing => {}
        }
    }
}
